from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from medcrypt.errors import ModelError
from medcrypt.processing import (
    EpochRecord,
    Normalisation,
    build_model,
    load_checkpoint,
    predict,
    save_checkpoint,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_round_trip(classes, tmp_path: Path, trained, blobs_test) -> None:  # type: ignore[no-untyped-def]
    history = [EpochRecord(epoch=1, train_loss=0.5, train_accuracy=0.9, metrics={"enc": 0.8})]
    digest = save_checkpoint(
        tmp_path / "m.pt", trained, arch="resnet18", class_names=classes, width=8, history=history
    )
    assert digest.startswith("sha256:")
    loaded = load_checkpoint(tmp_path / "m.pt")
    assert loaded.content_hash == digest
    assert (loaded.arch, loaded.width, loaded.class_names) == ("resnet18", 8, classes)
    assert loaded.normalisation == trained.normalisation
    assert loaded.history == history
    assert not loaded.model.training
    np.testing.assert_array_equal(
        predict(loaded.model, blobs_test[0]), predict(trained, blobs_test[0])
    )


def test_normalisation_must_agree_with_the_model(classes, tmp_path: Path) -> None:
    model = build_model("vgg11", 3, width=8)
    with pytest.raises(ModelError, match="does not match"):
        save_checkpoint(
            tmp_path / "m.pt",
            model,
            arch="vgg11",
            class_names=classes,
            width=8,
            normalisation=Normalisation(mean=(0.3,), std=(0.2,)),
        )
    with pytest.raises(ModelError, match="3 outputs but 2 class names"):
        save_checkpoint(tmp_path / "m.pt", model, arch="vgg11", class_names=["a", "b"], width=8)


def test_corrupt_and_foreign_files_refused(classes, tmp_path: Path) -> None:
    model = build_model("vgg11", 3, width=8)
    good = tmp_path / "m.pt"
    save_checkpoint(good, model, arch="vgg11", class_names=classes, width=8)
    data = good.read_bytes()

    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="not a readable medcrypt model checkpoint") as info:
        load_checkpoint(truncated)
    assert "truncated.pt" in str(info.value)

    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"hello, not a model")
    with pytest.raises(ModelError, match="not a readable"):
        load_checkpoint(garbage)

    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(ModelError, match="medcrypt-checkpoint"):
        load_checkpoint(foreign)

    payload = torch.load(good, weights_only=True)
    name = next(iter(payload["state_dict"]))
    payload["state_dict"][name] = payload["state_dict"][name] + 1.0
    tampered = tmp_path / "tampered.pt"
    torch.save(payload, tampered)
    with pytest.raises(ModelError, match="do not match their content hash"):
        load_checkpoint(tampered)

    payload = torch.load(good, weights_only=True)
    payload["width"] = 16
    wrong_arch = tmp_path / "wrong.pt"
    torch.save(payload, wrong_arch)
    with pytest.raises(ModelError, match="do not fit a vgg11 of width 16"):
        load_checkpoint(wrong_arch)

    with pytest.raises(ModelError, match="not found"):
        load_checkpoint(tmp_path / "absent.pt")
