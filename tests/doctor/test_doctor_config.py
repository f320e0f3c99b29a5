"""`DoctorConfig` files: saved as `doctor_config.json`; a doctor saved before the rename (`tfpo_config.json`, with the
keys `reference_name_or_path` / `reference_num_layers`) still loads, its settings under their new names."""

import json

from tfpo_hf import DoctorConfig
from tfpo_hf.utils.constants import DOCTOR_CONFIG_NAME, LEGACY_DOCTOR_CONFIG_NAME


def test_saved_under_the_new_name_and_read_back(tmp_path):
    DoctorConfig(beta=3.0, guidance="ratio", initial_name_or_path="base", initial_num_layers=2).save_pretrained(
        tmp_path
    )
    assert sorted(path.name for path in tmp_path.iterdir()) == [DOCTOR_CONFIG_NAME]
    loaded = DoctorConfig.from_pretrained(tmp_path)
    assert (loaded.beta, loaded.guidance, loaded.initial_name_or_path, loaded.initial_num_layers) == (
        3.0,
        "ratio",
        "base",
        2,
    )


def test_a_doctor_saved_before_the_rename_still_loads(tmp_path):
    assert LEGACY_DOCTOR_CONFIG_NAME != DOCTOR_CONFIG_NAME
    old = {"beta": 1.5, "reference_name_or_path": "start", "reference_num_layers": 4, "unknown_key": 7}
    (tmp_path / LEGACY_DOCTOR_CONFIG_NAME).write_text(json.dumps(old))
    loaded = DoctorConfig.from_pretrained(tmp_path)
    assert (loaded.beta, loaded.initial_name_or_path, loaded.initial_num_layers) == (1.5, "start", 4)
    assert loaded.extra == {"unknown_key": 7}


def test_the_new_file_wins_over_a_legacy_one(tmp_path):
    (tmp_path / LEGACY_DOCTOR_CONFIG_NAME).write_text(json.dumps({"beta": 1.0}))
    DoctorConfig(beta=2.0).save_pretrained(tmp_path)
    assert DoctorConfig.from_pretrained(tmp_path).beta == 2.0
