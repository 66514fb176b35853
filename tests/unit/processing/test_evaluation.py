"""Protection evaluation: report structure on a tiny run, and the issue's bar as a slow test."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from medcrypt.errors import ConfigError
from medcrypt.medical import CLASS_NAMES, make_phantom_slices
from medcrypt.processing import PGDSettings, TrainSettings, build_model, train_model
from medcrypt.processing.assessment import (
    PAPER_TARGETS,
    ProtectionReport,
    ProtectionSettings,
    encrypt_splits,
    evaluate_protection,
    paper_key,
    phantom_protection_report,
    phantom_setup,
)


def test_paper_key_uses_every_class_twice_and_no_fixed_point() -> None:
    key = paper_key(CLASS_NAMES, seed=3)
    assert key.targets == PAPER_TARGETS
    assert key.combiner == "concat"
    counts = np.bincount(np.concatenate([np.asarray(t) for t in key.targets]), minlength=5)
    assert counts.tolist() == [2, 2, 2, 2, 2]
    assert all(y not in t for y, t in enumerate(key.targets))
    assert paper_key(CLASS_NAMES, seed=3).combiner_params == key.combiner_params
    assert paper_key(CLASS_NAMES, seed=4).combiner_params != key.combiner_params
    with pytest.raises(ConfigError, match="5 classes"):
        paper_key(("a", "b", "c"), seed=0)


@pytest.fixture
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread is faster on a shared machine
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny() -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, torch.nn.Module]]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread is faster on a shared machine
    x_train, y_train = make_phantom_slices(4, size=32, seed=0)
    x_test, y_test = make_phantom_slices(2, size=32, seed=1)
    base = build_model("resnet18", 5, width=4, seed=0)
    train_model(base, x_train, y_train, seed=0, settings=TrainSettings(epochs=1), device="cpu")
    yield x_train, y_train, x_test, y_test, base
    torch.set_num_threads(threads)


@pytest.mark.timeout(120)
def test_encrypt_splits_budget_and_predicted_test_labels(tiny) -> None:  # type: ignore[no-untyped-def]
    x_train, y_train, x_test, _, base = tiny
    pgd = PGDSettings(eps=0.5, step=0.1, iters=3)
    key = paper_key(CLASS_NAMES, seed=0, pgd=pgd)
    splits = encrypt_splits(base, key, x_train, y_train, x_test, device="cpu")
    assert splits.train_images.shape == x_train.shape
    assert splits.test_images.shape == x_test.shape
    for orig, enc in ((x_train, splits.train_images), (x_test, splits.test_images)):
        d = (enc.astype(np.float64) - orig).reshape(len(orig), -1)
        assert np.sqrt((d**2).sum(axis=1)).max() <= 0.5 + 1e-9
        assert enc.min() >= 0.0 and enc.max() <= 1.0
        # quantised to 16 bits, as released
        np.testing.assert_allclose(enc * 65535, np.rint(enc * 65535), atol=1e-2)
        assert not np.array_equal(enc, orig)
    from medcrypt.processing import predict

    np.testing.assert_array_equal(splits.test_encrypt_labels, predict(base, x_test, device="cpu"))
    p = splits.train_perceptual
    assert p.n == len(x_train)
    assert p.psnr_min <= p.psnr_mean
    assert p.l2_max <= 0.5 + 1e-9
    assert 0.0 <= p.target_success <= 1.0
    # PSNR agrees with the L2 budget: MSE <= eps^2 / pixels
    assert p.psnr_min >= 10 * math.log10(32 * 32 / 0.5**2) - 1e-6


@pytest.mark.timeout(240)
def test_report_structure_json_and_markdown(tiny) -> None:  # type: ignore[no-untyped-def]
    x_train, y_train, x_test, y_test, base = tiny
    pgd = PGDSettings(eps=0.5, step=0.1, iters=2)
    key = paper_key(CLASS_NAMES, seed=0, pgd=pgd)
    settings = ProtectionSettings(
        archs=("resnet18", "vgg11"), width=4, train=TrainSettings(epochs=2), seed=0
    )
    calls: list[tuple[int, int | None, str]] = []
    report = evaluate_protection(
        base,
        key,
        x_train,
        y_train,
        x_test,
        y_test,
        settings=settings,
        device="cpu",
        dataset="tiny",
        progress=lambda d, t, w: calls.append((d, t, w)),
    )
    assert [r.arch for r in report.results] == ["resnet18", "vgg11"]
    for r in report.results:
        assert len(r.history) == 2
        assert r.encrypted_test_peak >= r.encrypted_test_final
        assert r.original_test_peak >= r.original_test_final
        assert r.clean_peak >= r.clean_final
        assert r.encrypted_test_final == r.history[-1].encrypted_test
        assert r.relative_final == pytest.approx(r.encrypted_test_final / r.clean_final)
        assert not r.baseline_reused_from_base_model
        # per-class recall of the final model; the test split is balanced, so its mean is
        # the final original-test accuracy
        assert len(r.original_test_recall) == 5
        assert all(v is not None and 0.0 <= v <= 1.0 for v in r.original_test_recall)
        assert np.mean(r.original_test_recall) == pytest.approx(r.original_test_final)
        for h in r.history:
            for v in (h.encrypted_test, h.original_test, h.clean_baseline):
                assert v is not None and 0.0 <= v <= 1.0
    assert report.key_fingerprint == key.fingerprint
    assert report.n_train == 20 and report.n_test == 10
    assert report.chance_accuracy == pytest.approx(0.2)
    # the secret never appears in the report
    text = report.model_dump_json()
    assert key.secret.get_secret_value() not in text
    again = ProtectionReport.model_validate(json.loads(text))
    assert again == report
    md = report.to_markdown()
    assert "| resnet18 |" in md and "| vgg11 |" in md and "PSNR" in md
    assert "| Architecture | meningioma | chordoma |" in md  # the per-class recall table
    # the release policy: the key by fingerprint, target count and PGD only (no combiner)
    assert "combiner" not in report.model_dump() and "concat" not in md
    assert report.n_targets == tuple(len(t) for t in key.targets)
    # progress: monotone, ends at the total (encryption + 4 trainings of 2 epochs)
    done = [c[0] for c in calls]
    assert done == sorted(done)
    assert calls[-1][0] == calls[-1][1] == 30 + 4 * 2


def test_passes_applies_each_bar(tiny) -> None:  # type: ignore[no-untyped-def]
    from medcrypt.processing.assessment._report import ArchitectureResult, PerceptualSummary

    def perceptual(psnr: float) -> PerceptualSummary:
        return PerceptualSummary(
            n=1, psnr_mean=psnr, psnr_min=psnr, ssim_mean=1, ssim_min=1, l2_mean=1,
            l2_max=1, linf_mean=0.1, linf_max=0.1, target_success=1,
        )  # fmt: skip

    def result(enc: float, orig: float, orig_peak: float) -> ArchitectureResult:
        return ArchitectureResult(
            arch="resnet18", width=8, clean_final=0.9, clean_peak=0.9,
            encrypted_test_final=enc, encrypted_test_peak=enc, original_test_final=orig,
            original_test_peak=orig_peak, relative_final=enc / 0.9, history=(),
        )  # fmt: skip

    def report(psnr: float, *results: ArchitectureResult) -> ProtectionReport:
        return ProtectionReport(
            dataset="x", class_names=CLASS_NAMES, n_train=1, n_test=1, image_shape=(8, 8),
            key_fingerprint="mk1:0", n_targets=(2,) * 5, pgd=PGDSettings(),
            settings=ProtectionSettings(), base_arch="resnet18", base_test_accuracy=0.9,
            chance_accuracy=0.2, train_perceptual=perceptual(psnr),
            test_perceptual=perceptual(psnr), results=results, seconds=0.0,
        )  # fmt: skip

    good = result(0.85, 0.3, 0.45)
    assert report(36.0, good).passes()
    assert not report(36.0, good).passes(peak=True)  # peak original accuracy 45% > 40%
    assert not report(34.0, good).passes()  # PSNR too low
    assert not report(36.0, good, result(0.7, 0.3, 0.3)).passes()  # 0.7/0.9 < 90% of clean
    assert not report(36.0, result(0.85, 0.5, 0.5)).passes()  # learns real images
    assert not report(36.0).passes()  # no architecture evaluated
    chance = result(0.85, 0.3, 0.3).model_copy(update={"clean_final": 0.3})
    assert not report(36.0, chance).passes()  # clean baseline near chance proves nothing


def test_recall_per_class_marks_absent_classes() -> None:
    from medcrypt.processing.assessment._evaluation import _recall_per_class

    truth = np.array([0, 0, 1, 1, 1, 3])
    predicted = np.array([0, 1, 1, 1, 0, 2])
    assert _recall_per_class(truth, predicted, 4) == [0.5, pytest.approx(2 / 3), None, 0.0]


def test_unknown_architecture_is_refused(tiny) -> None:  # type: ignore[no-untyped-def]
    x_train, y_train, x_test, y_test, base = tiny
    with pytest.raises(ConfigError, match="unknown architecture"):
        evaluate_protection(
            base,
            paper_key(CLASS_NAMES, seed=0),
            x_train,
            y_train,
            x_test,
            y_test,
            settings=ProtectionSettings(archs=("resnet18", "alexnet")),
        )


@pytest.mark.timeout(240)
def test_cli_phantoms_then_evaluate_on_the_folder(tmp_path, one_thread) -> None:  # type: ignore[no-untyped-def]
    from click.testing import CliRunner

    from medcrypt.cli import main

    runner = CliRunner()
    data = tmp_path / "slices"
    res = runner.invoke(
        main, ["-q", "phantoms", "--out", str(data), "--n-per-class", "4", "--size", "32"]
    )
    assert res.exit_code == 0, res.output
    pngs = sorted(p.relative_to(data).as_posix() for p in data.rglob("*.png"))
    assert len(pngs) == 20 and pngs[0] == "chordoma/00000.png"
    out = tmp_path / "report"
    args = ["-q", "evaluate", "--data", str(data), "--epochs", "1", "--width", "4"]
    args += ["--iters", "2", "--eps", "0.5", "--archs", "resnet18,vgg11", "--out", str(out)]
    res = runner.invoke(main, args)
    assert res.exit_code == 0, res.output
    report = ProtectionReport.model_validate_json((out / "protection_report.json").read_text())
    assert report.n_train + report.n_test == 20
    assert report.n_test == 5  # 25% of 4 per class, stratified
    assert (out / "protection_report.md").read_text().startswith("### Protection report")
    res = runner.invoke(main, ["-q", "evaluate", "--archs", "resnet18,nope", "--out", str(out)])
    assert res.exit_code == 2 and "unknown architecture" in res.output


@pytest.mark.timeout(240)
def test_base_model_is_sized_apart_from_the_evaluated_models(one_thread) -> None:  # type: ignore[no-untyped-def]
    settings = ProtectionSettings(
        archs=("resnet18", "vgg11"), width=4, base_width=6, base_epochs=2,
        train=TrainSettings(epochs=1), seed=0,
    )  # fmt: skip
    assert settings.base_model_width == 6 and settings.base_train.epochs == 2
    assert settings.base_train.batch_size == settings.train.batch_size
    same = ProtectionSettings(width=4, train=TrainSettings(epochs=3))
    assert same.base_model_width == 4 and same.base_train == same.train
    calls: list[tuple[int, int | None, str]] = []
    report = phantom_protection_report(
        n_per_class=2, n_test_per_class=1, size=32, seed=0, settings=settings,
        pgd=PGDSettings(eps=0.5, step=0.1, iters=1), device="cpu",
        progress=lambda d, t, w: calls.append((d, t, w)),
    )  # fmt: skip
    base_calls = [c for c in calls if c[2].startswith("base resnet18")]
    assert base_calls and {c[1] for c in base_calls} == {2}  # the base trained 2 epochs
    assert all(len(r.history) == 1 for r in report.results)  # the evaluated ones 1
    assert all(not r.baseline_reused_from_base_model for r in report.results)
    assert report.settings.base_width == 6
    assert "base model resnet18 width 6" in report.to_markdown()


@pytest.mark.timeout(240)
def test_a_shared_setup_gives_the_one_shot_report_and_serves_several_budgets(one_thread) -> None:  # type: ignore[no-untyped-def]
    settings = ProtectionSettings(
        archs=("resnet18",), width=4, base_width=6, base_epochs=2,
        train=TrainSettings(epochs=1), seed=0,
    )  # fmt: skip
    shape = {"n_per_class": 2, "n_test_per_class": 1, "size": 32, "seed": 0}
    small, large = PGDSettings(eps=0.3, iters=6), PGDSettings(eps=1.0, iters=6)
    one_shot = phantom_protection_report(**shape, settings=settings, pgd=small, device="cpu")
    setup = phantom_setup(**shape, settings=settings, device="cpu")
    assert setup.x_train.shape == (10, 32, 32) and setup.x_test.shape == (5, 32, 32)
    assert getattr(setup.base, "width", None) == 6
    base_weights = {k: v.clone() for k, v in setup.base.state_dict().items()}
    shared = phantom_protection_report(settings=settings, pgd=small, device="cpu", setup=setup)
    # Same phantoms, same base model, same seeds: the same report but for the wall time.
    drop = {"seconds"}
    assert shared.model_dump(exclude=drop) == one_shot.model_dump(exclude=drop)
    wider = phantom_protection_report(settings=settings, pgd=large, device="cpu", setup=setup)
    # The base model is not changed by an evaluation, so a second budget sees the same one.
    for k, v in setup.base.state_dict().items():
        assert torch.equal(v, base_weights[k]), k
    assert wider.base_test_accuracy == shared.base_test_accuracy
    assert wider.pgd.eps == 1.0 and shared.pgd.eps == 0.3
    assert wider.test_perceptual.l2_max > shared.test_perceptual.l2_max
    assert shared.test_perceptual.l2_max <= 0.3 + 1e-4


def test_cli_refuses_base_model_shape_with_a_given_model(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from click.testing import CliRunner

    from medcrypt.cli import main

    data = tmp_path / "d" / "a"
    data.mkdir(parents=True)
    model = tmp_path / "m.pt"
    model.write_bytes(b"")
    args = ["-q", "evaluate", "--data", str(data.parent), "--model", str(model)]
    res = CliRunner().invoke(main, [*args, "--base-width", "16", "--out", str(tmp_path / "o")])
    assert res.exit_code == 2, res.output
    assert "cannot apply to the one given with --model" in res.output


# The phantom protocol at the scale of its measured rows (benchmarks/README.md, second round):
# 64x64 phantoms, 100 training and 30 test slices per class; the data owner's base model is a
# ResNet-18 of width 32 trained 15 epochs (92-93% test accuracy); the paper's concat
# correspondence; L2 PGD eps 1.1 (PSNR >= 35.3 dB at 64x64 by construction), 30 iterations;
# the attacker's ResNet-18 and VGG-11 (width 8) trained 8 epochs. What it checks holds today:
# the budget, a meaningful baseline, and encrypted data that trains. Whether the release
# protects (the withdrawn phantom bar, original-test accuracy <= 40%) is measured on real
# tumour-type MRI by benchmarks/protection_figshare.py, not here.
SLOW_SETTINGS = {
    "n_per_class": 100,
    "n_test_per_class": 30,
    "size": 64,
    "eps": 1.1,
    "iters": 30,
    "epochs": 8,
    "base_width": 32,
    "base_epochs": 15,
}


@pytest.fixture(scope="module")
def phantom_report() -> ProtectionReport:
    """The issue's protection protocol on phantoms, computed once for the tests below."""
    # Every core torch sees (2 on the project's machines): the width-32 base model and the
    # PGD passes are large enough to gain from a second thread (99 -> 70 s for this fixture
    # on 2 idle cores, measured back to back); the unit tests' tiny models keep one thread.
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    try:
        s = SLOW_SETTINGS
        report = phantom_protection_report(
            n_per_class=int(s["n_per_class"]),
            n_test_per_class=int(s["n_test_per_class"]),
            size=int(s["size"]),
            seed=0,
            settings=ProtectionSettings(
                archs=("resnet18", "vgg11"),
                width=8,
                train=TrainSettings(epochs=int(s["epochs"]), batch_size=32),
                seed=0,
                base_width=int(s["base_width"]),
                base_epochs=int(s["base_epochs"]),
            ),
            pgd=PGDSettings(eps=float(s["eps"]), step=0.1, iters=int(s["iters"])),
            device="cpu",
        )
    finally:
        torch.set_num_threads(threads)
    print(report.to_markdown())  # the figures, visible with pytest -s
    return report


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_phantom_protection_budget_and_learnability(phantom_report: ProtectionReport) -> None:
    """What holds today: the budget, a meaningful baseline, and encrypted data that trains."""
    report = phantom_report
    assert report.chance_accuracy == pytest.approx(0.2)
    assert report.base_test_accuracy >= 0.85, "the data owner's base model should be strong"
    assert report.train_perceptual.psnr_mean >= 35.0
    assert report.test_perceptual.psnr_mean >= 35.0
    for r in report.results:
        assert r.clean_final >= 0.6, f"{r.arch}: clean baseline too weak to judge protection"
        assert r.encrypted_test_final >= 0.9 * r.clean_final, r


def test_cli_evaluate_refuses_a_linf_paper_mode(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from click.testing import CliRunner

    from medcrypt.cli import main

    args = ["-q", "evaluate", "--mode", "paper", "--norm", "linf", "--out", str(tmp_path / "o")]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 2, res.output
    assert "paper" in res.output and "linf" in res.output.lower()
