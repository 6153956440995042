"""The reconstruction-quality pipeline (issue 20): the data builder and its file layout, the SSIM targets, the
batches, RQNet's geometry, training (smoke + resume), the ranking report, and the shipped model on the real
16-coil k-space (shared data)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mriqa.evaluation.recon_quality import (format_report, in_object_ssim, ranking_report, subject_of,
                                           within_slice_srcc)
from mriqa.models.reconq import RQNet, normalize_magnitude, receptive_field
from mriqa.recon_quality.data import (build_quality_split, mask_groups, read_quality_set, real_kspace_set,
                                      write_quality_set)
from recon.errors import InputError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_split(tmp_path_factory, phantom_kspace):
    """A fully sampled 4-coil phantom volume in fastMRI layout under ``multicoil_test``, built into a quality
    set with zero-filled and CG-SENSE at R = 2 and 6 (equispaced)."""
    from recon.io.fastmri_h5 import write_fastmri_h5

    root = tmp_path_factory.mktemp("rqdata")
    kspace, rss = phantom_kspace(slices=2, size=64, coils=4)
    write_fastmri_h5(root / "multicoil_test" / "phantom.h5", kspace, reconstruction_rss=rss)
    out = build_quality_split(root, "test", root / "q.h5", methods=("zf", "sense"), accels=(2.0, 6.0),
                              masks=("equispaced",), slices=1, log=lambda s: None)
    return out, rss


def test_builder_writes_every_method_and_r_with_exact_figures(tiny_split):
    from recon.metrics import ssim

    path, _ = tiny_split
    d = read_quality_set([path])
    assert sorted(set(d["method"])) == ["sense", "zf"] and sorted(set(d["accel"].tolist())) == [2.0, 6.0]
    assert d["images"].shape == (4, 64, 64) and d["images"].dtype == np.float32
    assert d["references"].shape == (2, 64, 64) and set(d["volume"]) == {"phantom"}
    for i in range(len(d["images"])):
        ref = d["references"][d["ref_index"][i]]
        assert d["ssim"][i] == pytest.approx(ssim(ref[None], d["images"][i][None]), abs=1e-5)
    # more undersampling, worse zero-filled image; CG-SENSE beats zero-filled at R = 6 on this phantom
    zf = {a: s for a, s, m in zip(d["accel"], d["ssim"], d["method"]) if m == "zf"}
    sense = {a: s for a, s, m in zip(d["accel"], d["ssim"], d["method"]) if m == "sense"}
    assert zf[2.0] > zf[6.0] and sense[6.0] > zf[6.0]
    # nominal and effective R both recorded (64 lines: R = 6 equispaced keeps 10 lines, effective 6.4)
    assert np.allclose(d["accel_effective"], np.where(d["accel"] == 6.0, 6.4, d["accel"]), atol=0.05)


def test_read_joins_shards_and_write_round_trips(tiny_split, tmp_path):
    path, _ = tiny_split
    d = read_quality_set([path])
    copy = write_quality_set(tmp_path / "copy.h5", d, {"source": "test"})
    joined = read_quality_set([path, copy])
    assert len(joined["images"]) == 2 * len(d["images"]) and len(joined["references"]) == 2 * len(d["references"])
    # the second shard's images still point at their own references
    half = len(d["images"])
    assert np.array_equal(joined["references"][joined["ref_index"][half:]], d["references"][d["ref_index"]])
    for k in ("method", "mask_kind", "volume"):
        assert list(joined[k][half:]) == list(d[k])


def test_read_names_a_bad_file(tmp_path):
    bad = tmp_path / "notes.h5"
    bad.write_text("not hdf5")
    with pytest.raises(InputError) as err:
        read_quality_set([bad])
    assert "notes.h5" in str(err.value) and "reconstruction-quality" in str(err.value)
    with pytest.raises(InputError):
        read_quality_set([])


def test_mask_groups_cover_the_grid_or_draw_from_it():
    grid = mask_groups(None, (2.0, 4.0, 8.0), ("random", "poisson"), None)
    # Poisson-disk masks start at R = 4 (sigpy's search does not end below)
    assert (2.0, "poisson") not in grid and len(grid) == 5
    drawn = mask_groups(np.random.default_rng(0), (2.0, 4.0, 8.0), ("random", "poisson"), 3)
    assert len(drawn) == 3 and set(drawn) <= set(grid)


def test_ssim_targets_match_skimage_and_handle_crops():
    from mriqa.train_rq import ssim_targets
    from recon.metrics import ssim

    rng = np.random.default_rng(0)
    ref = rng.random((2, 40, 56)).astype(np.float32)
    img = (ref + 0.1 * rng.standard_normal(ref.shape)).astype(np.float32)
    cells, score, weights = ssim_targets(torch.from_numpy(img), torch.from_numpy(ref))
    assert cells.shape == weights.shape == (2, 1, 5, 7) and bool((weights == 1).all())
    for i in range(2):
        assert score[i].item() == pytest.approx(ssim(ref[i][None], img[i][None]), abs=1e-5)


def test_object_targets_match_the_in_object_ssim(phantom_kspace):
    from mriqa.train_rq import ssim_targets, weighted_score

    _, rss = phantom_kspace(slices=2, size=64, coils=4)
    rng = np.random.default_rng(1)
    img = (rss + 0.05 * rss.max() * rng.standard_normal(rss.shape)).astype(np.float32)
    cells, score, weights = ssim_targets(torch.from_numpy(img), torch.from_numpy(rss), "object")
    expected = in_object_ssim({"references": rss, "images": img, "ref_index": np.arange(2)})
    assert np.allclose(score.numpy(), expected, atol=1e-4)
    # the disc covers the middle cells wholly and the corners not at all
    assert weights[0, 0, 4, 4] == 1.0 and weights[0, 0, 0, 0] == 0.0
    assert torch.allclose(weighted_score(cells, torch.ones_like(cells)), cells.flatten(1).mean(1))


def test_batches_crop_pairs_alike_and_mix_in_references():
    from mriqa.train_rq import QualityBatches

    rng = np.random.default_rng(0)
    refs = rng.random((3, 64, 64)).astype(np.float32)
    data = {"images": refs[[0, 1, 2, 0]] * 0.5, "references": refs, "ref_index": np.array([0, 1, 2, 0])}
    batches = QualityBatches(data, reference_fraction=0.25, crop_probability=1.0, crop_min=32)
    imgs, out_refs = batches.draw(rng, 8)
    assert imgs.shape == out_refs.shape and 32 <= imgs.shape[-1] <= 64 and imgs.shape[-1] == imgs.shape[-2]
    # the six reconstructions are half their reference, wherever the window and flip fell
    assert np.allclose(imgs[:6], 0.5 * out_refs[:6])
    plain = QualityBatches(data, reference_fraction=0.0)
    assert plain.draw(rng, 4)[0].shape == (4, 64, 64)


def test_slice_batches_compare_methods_on_the_same_anatomy():
    from mriqa.train_rq import QualityBatches

    n = 6 * 8  # 6 slices x 8 reconstructions, each image tagged with its slice number
    images = np.repeat(np.arange(6, dtype=np.float32), 8)[:, None, None] * np.ones((1, 32, 32), np.float32)
    data = {"images": images, "references": np.ones((n, 32, 32), np.float32), "ref_index": np.arange(n),
            "volume": np.array(["v"] * n), "slice": np.repeat(np.arange(6), 8)}
    rng = np.random.default_rng(0)
    grouped = QualityBatches(data, 0.0, slice_probability=1.0)
    for _ in range(5):
        assert len(np.unique(grouped.draw(rng, 12)[0][:, 0, 0])) <= 2
    mixed = QualityBatches(data, 0.0)
    assert max(len(np.unique(mixed.draw(rng, 12)[0][:, 0, 0])) for _ in range(5)) > 2


def test_heavy_noise_references_are_mostly_noise():
    from mriqa.train_rq import QualityBatches, degrade_reference, ssim_targets

    rng = np.random.default_rng(0)
    ref = np.zeros((64, 64), np.float32)
    ref[16:48, 16:48] = 1.0
    heavy = np.stack([degrade_reference(ref, rng, heavy_noise=True) for _ in range(16)])
    mild = np.stack([degrade_reference(ref, rng) for _ in range(16)])
    refs = torch.from_numpy(np.repeat(ref[None], 16, 0))
    ssim_heavy = ssim_targets(torch.from_numpy(heavy), refs)[1]
    ssim_mild = ssim_targets(torch.from_numpy(mild), refs)[1]
    # noise of 10-300 % of the max: every image far below the mild degradations' typical SSIM
    assert float(ssim_heavy.max()) < 0.5 < float(ssim_mild.median())
    data = {"images": np.repeat(ref[None], 4, 0), "references": ref[None], "ref_index": np.zeros(4, int)}
    on = QualityBatches(data, reference_fraction=0.5, noise_probability=1.0).draw(np.random.default_rng(3), 8)
    assert float(ssim_targets(torch.from_numpy(on[0][4:]), torch.from_numpy(on[1][4:]))[1].max()) < 0.5


def test_rqnet_sees_aliasing_replicas_and_keeps_the_map_geometry():
    model = RQNet(width=8).eval()
    # an equispaced R = 2 replica of a 128 px image lies 64 px away: the window of one 8 px map cell holds both
    # copies (farther replicas, on larger images, reach it through the global branch)
    assert receptive_field(model) == model.receptive_field == 119 >= 64 + 8
    with torch.no_grad():
        qmap = model(normalize_magnitude(torch.rand(2, 70, 96)))
    assert qmap.shape == (2, 1, 9, 12) and float(qmap.min()) >= 0 and float(qmap.max()) <= 1
    # the normalisation makes the score scale-free
    x = torch.rand(1, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model(normalize_magnitude(x)), model(normalize_magnitude(1000 * x)), atol=1e-6)


def test_ranking_report_reads_perfect_and_reversed_scores():
    rows = []
    for vol in ("ixi-A_axial", "ixi-A_coronal", "colin27_axial"):
        for method, base in (("zf", 0.5), ("modl", 0.8)):
            for r in (2.0, 4.0, 8.0):
                rows.append((vol, method, r, base - 0.03 * r))
    d = {"volume": np.array([r[0] for r in rows]), "method": np.array([r[1] for r in rows]),
         "accel": np.array([r[2] for r in rows]), "mask_kind": np.array(["random"] * len(rows)),
         "ssim": np.array([r[3] for r in rows])}
    assert subject_of("ixi-A_axial") == "ixi-A" and subject_of("colin27_axial") == "colin27"
    good = ranking_report(d, d["ssim"] + 0.01)
    assert good["pooled_srcc"] == pytest.approx(1.0) and set(good["per_subject_srcc"]) == {"ixi-A", "colin27"}
    assert good["pair_order_agreement"] == 1.0 and good["zf_above_modl"] == 0
    assert good["means_per_r"]["modl"][4.0] == pytest.approx([0.8 - 0.12 + 0.01, 0.8 - 0.12])
    assert good["score_mae"] == pytest.approx(0.01)
    assert "| MoDL | 0.750 / 0.740 | 0.690 / 0.680 | 0.570 / 0.560 |" in format_report("t", good, {"modl": "MoDL"})
    bad = ranking_report(d, -d["ssim"])
    assert bad["pooled_srcc"] == pytest.approx(-1.0) and bad["pair_order_agreement"] == 0.0
    assert bad["zf_above_modl"] == bad["zf_modl_groups"] == 9
    assert "colin27_axial R = 8 random" in bad["zf_above_modl_where"] and good["zf_above_modl_where"] == []


def test_in_object_ssim_ignores_the_background_convention(phantom_kspace):
    from recon.metrics import ssim

    _, rss = phantom_kspace(slices=1, size=64, coils=4)
    ref = rss[0]
    zero_background = np.where(ref > 0.2 * ref.max(), ref, 0.0).astype(np.float32)
    data = {"references": ref[None], "images": np.stack([ref, zero_background]), "ref_index": np.array([0, 0])}
    inside = in_object_ssim(data)
    assert inside[0] == pytest.approx(1.0)
    # the zero background costs whole-image SSIM, much less inside the object
    assert 1.0 - inside[1] < 0.5 * (1.0 - ssim(ref[None], zero_background[None]))


@pytest.mark.parametrize("region, pretrain", [("image", 2), ("object", 0)])
def test_training_smoke_and_resume(tiny_split, tmp_path, region, pretrain):
    from mriqa.predictor import load_predictor
    from mriqa.train_rq import load_config, train

    path, _ = tiny_split
    cfg = load_config(None, [f"data.train=[{path}]", f"data.val=[{path}]", f"output_dir={tmp_path / 'run'}",
                             "model.width=8", "train.steps=4", "train.batch=4", "train.eval_every=2",
                             "train.checkpoint_every=2", "train.progress=false", "data.crop_probability=0.5",
                             f"loss.target_region={region}", f"train.pretrain_jpeg_steps={pretrain}"])
    first = train(cfg, log=lambda s: None)
    assert first["step"] == 4 and (tmp_path / "run" / "best.safetensors").exists()
    cfg["train"]["steps"] = 6
    again = train(cfg, log=lambda s: None)  # resumes from the checkpoint at step 4
    assert again["step"] == 6
    scores = load_predictor(again["weights"], device="cpu").score(read_quality_set([path])["images"])
    assert scores.shape == (4,) and np.all((scores >= 0) & (scores <= 1))


def test_training_from_init_starts_as_the_init_and_refuses_another_network(tiny_split, tmp_path):
    from mriqa.predictor import load_predictor
    from mriqa.train_rq import load_config, train
    from recon.errors import InputError

    path, _ = tiny_split
    base = [f"data.train=[{path}]", f"data.val=[{path}]", "model.width=8", "train.batch=4",
            "train.eval_every=1", "train.checkpoint_every=1", "train.progress=false"]
    first = train(load_config(None, base + [f"output_dir={tmp_path / 'a'}", "train.steps=3"]), log=lambda s: None)
    images = read_quality_set([path])["images"]
    before = load_predictor(first["weights"], device="cpu").score(images)
    # a learning rate of zero: the fine-tuned weights are the init's, so are its scores
    tuned = train(load_config(None, base + [f"output_dir={tmp_path / 'b'}", "train.steps=1", "train.lr=0",
                                            f"init={first['weights']}"]), log=lambda s: None)
    assert np.allclose(load_predictor(tuned["weights"], device="cpu").score(images), before, atol=1e-6)
    with pytest.raises(InputError, match="init weights do not fit"):
        train(load_config(None, base + [f"output_dir={tmp_path / 'c'}", "train.steps=1", "model.width=16",
                                        f"init={first['weights']}"]), log=lambda s: None)
    assert not (tmp_path / "c").exists()  # refused before the run directory is made


@pytest.fixture(scope="module")
def real_set(shared_data):
    return real_kspace_set(shared_data, methods=("zf", "sense"), accels=(2, 8), masks=("equispaced",),
                           log=lambda s: None)


def test_real_kspace_set_layout(real_set):
    assert set(real_set["volume"]) == {"sense-tutorial_as-stored", "sense-tutorial_transposed"}
    assert real_set["images"].shape[1:] == (96, 96) and len(real_set["references"]) == 2
    assert len(real_set["images"]) == 2 * 2 * 2  # orientations x R x methods
    # the reference's own figures: CG-SENSE at R = 2 is close to it
    sel = (real_set["method"] == "sense") & (real_set["accel"] == 2)
    assert np.all(real_set["ssim"][sel] > 0.9)


def test_acquired_kspace_set_thins_the_scans_own_lines(shared_data, tmp_path):
    """The second real scan (96 of 168 lines acquired): as acquired and with 1 in 4 of the outer lines kept; the
    central run is always kept, the effective R is the 168 lines over those kept, and the set round-trips."""
    from mriqa.recon_quality.data import acquired_kspace_set, write_quality_set

    data = acquired_kspace_set(shared_data, factors=(1, 4), methods=("zf", "sense"), log=lambda s: None)
    assert list(data["method"]) == ["zf", "sense", "zf", "sense"] and data["images"].shape[1:] == (320, 168)
    r = data["accel"]
    assert r[0] == pytest.approx(168 / 96) and r[2] > 2 * r[0] and np.all(r == data["accel_effective"])
    assert np.isnan(data["ssim"]).all() and data["references"].shape == (1, 320, 168)
    back = read_quality_set([write_quality_set(tmp_path / "a.h5", data, {"source": "test"})])
    assert np.array_equal(back["images"], data["images"]) and list(back["volume"]) == ["smallfov"] * 4


def test_shipped_model_ranks_real_zero_filled_by_r(real_set):
    """The shipped recon model on the real 16-coil k-space (never seen in training): zero-filled R = 2 scores
    above R = 8 in both orientations (the gray QF scores them the other way round)."""
    import mriqa

    recon = mriqa.load_predictor("recon", device="cpu").score(real_set["images"], pool="mean", kind="mri")
    for vol in set(real_set["volume"]):
        zf = {a: s for a, s, m, v in zip(real_set["accel"], recon, real_set["method"], real_set["volume"])
              if m == "zf" and v == vol}
        assert zf[2.0] > zf[8.0] + 0.05, (vol, zf)


def test_within_slice_srcc_ignores_anatomy():
    # two slices, one method each: scores rank perfectly inside each slice although slice b's are all lower
    data = {"volume": np.array(["v"] * 6), "slice": np.array([0, 0, 0, 1, 1, 1]), "method": np.array(["zf"] * 6)}
    target = np.array([0.9, 0.8, 0.7, 0.95, 0.85, 0.75])
    scores = np.array([0.6, 0.5, 0.4, 0.3, 0.2, 0.1])
    assert within_slice_srcc(data, scores, target) == pytest.approx(1.0)
    assert within_slice_srcc(data, scores[[2, 1, 0, 3, 4, 5]], target) == pytest.approx(0.0)
    short = {k: v[:2] for k, v in data.items()}  # no sequence of 3
    assert np.isnan(within_slice_srcc(short, scores[:2], target[:2]))


def test_builder_adds_noise_from_each_slices_own_snr(tmp_path, phantom_kspace):
    """A make-dataset file of ``--snr-max`` holds one SNR per slice (``snr_per_slice``; its ``snr`` is the range's
    low end): the augmentation draws each slice's new SNR below that slice's own, so a slice at SNR 1000 can be
    kept at SNR 15-400 rather than capped at the file's 50."""
    from recon.io.fastmri_h5 import write_fastmri_h5

    kspace, rss = phantom_kspace(slices=2, size=64, coils=4)
    signal = float(rss.mean())
    write_fastmri_h5(tmp_path / "multicoil_train" / "phantom.h5", kspace, reconstruction_rss=rss,
                     attrs={"snr": 50.0, "snr_per_slice": np.array([1000.0, 50.0]),
                            "noise_std": np.array([signal / 1000.0, signal / 50.0])})
    out = build_quality_split(tmp_path, "train", tmp_path / "q.h5", methods=("zf",), accels=(2.0, 3.0, 4.0, 6.0),
                              masks=("equispaced", "random"), slices=2, augment=True, snr_range=(15.0, 400.0),
                              log=lambda s: None)
    d = read_quality_set([out])
    first, second = d["snr"][d["slice"] == 0], d["snr"][d["slice"] == 1]
    assert len(first) == len(second) == 8
    assert np.all((first >= 15.0 - 1e-3) & (first <= 400.0 + 1e-3)) and first.max() > 100.0
    assert np.all((second >= 15.0 - 1e-3) & (second <= 50.0 + 1e-3))
