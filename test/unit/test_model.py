"""Unit tests of the BEVFormer-style detector (qdbev_core.model): shapes, sizes, geometry,
temporal input, losses, matcher, decoding and ONNX parity. Runs in well under two minutes on
2 CPU threads."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from qdbev_core.data.rig import rig_arrays
from qdbev_core.geometry import project_points
from qdbev_core.model import (
    FIRST_LAYER,
    BEVDetector,
    DetectionLoss,
    ExportWrapper,
    HungarianMatcher,
    decode_boxes,
    decode_dense_detections,
    decode_detections,
    encode_boxes,
    get_config,
)
from qdbev_core.model.config import REFERENCE_PARAMS_M
from qdbev_core.model.summary import describe
from qdbev_core.model.flops import count_parameters
from qdbev_core.model.losses import build_dense_targets
from qdbev_core.model.ops import inverse_sigmoid, project_to_cameras

torch.set_num_threads(2)


def rig_inputs(cfg, batch: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random normalized images plus the nuScenes rig scaled to the config's input width."""
    h, w = cfg.image_size
    k, t = rig_arrays(w / 1600)
    g = torch.Generator().manual_seed(0)
    img = torch.randn(batch, 6, 3, h, w, generator=g)
    kt = torch.tensor(k, dtype=torch.float32).expand(batch, -1, -1, -1).contiguous()
    tt = torch.tensor(t, dtype=torch.float32).expand(batch, -1, -1, -1).contiguous()
    return img, kt, tt


def yaw_motion(dx: float, dy: float, yaw: float) -> torch.Tensor:
    m = torch.eye(4)
    m[0, 0], m[0, 1], m[1, 0], m[1, 1] = math.cos(yaw), -math.sin(yaw), math.sin(yaw), math.cos(yaw)
    m[0, 3], m[1, 3] = dx, dy
    return m


TARGETS = [
    {
        "boxes": torch.tensor(
            [
                [12.0, 4.0, 0.2, 4.5, 1.9, 1.6, 0.3, 3.0, 0.5],
                [-18.0, -7.0, 0.4, 0.7, 0.7, 1.8, -1.2, 0.5, 0.0],
                [6.0, -15.0, 0.8, 11.0, 2.9, 3.4, 2.0, float("nan"), float("nan")],
                [30.0, 20.0, 0.0, 0.4, 0.4, 0.9, 0.0, 0.0, 0.0],
                [90.0, 0.0, 0.0, 4.0, 2.0, 1.5, 0.0, 0.0, 0.0],  # outside the BEV range: ignored
            ]
        ),
        "labels": torch.tensor([0, 8, 3, 9, 0]),
    }
]


@pytest.fixture(scope="module")
def nano():
    torch.manual_seed(0)
    return BEVDetector("nano")


@pytest.fixture(scope="module")
def nano_inputs(nano):
    return rig_inputs(nano.cfg)


def test_nano_output_shapes(nano, nano_inputs):
    cfg = nano.cfg
    nano.eval()
    with torch.no_grad():
        out = nano(*nano_inputs)
    L, Q, K, C, HW = cfg.dec_layers, cfg.num_queries, cfg.num_classes, cfg.embed_dims, cfg.bev_h * cfg.bev_w
    assert out["cls_logits"].shape == (L, 1, Q, K)
    assert out["box_codes"].shape == (L, 1, Q, 10)
    assert out["boxes"].shape == (L, 1, Q, 9)
    assert out["reference_points"].shape == (L, 1, Q, 3)
    assert out["bev"].shape == (1, HW, C)
    assert out["bev_cam_mask"].shape == (1, 6, HW)
    assert out["heatmap"].shape == (1, K, cfg.bev_h, cfg.bev_w)
    assert out["heatmap_reg"].shape == (1, 10, cfg.bev_h, cfg.bev_w)
    h, w = cfg.image_size
    assert [tuple(f.shape) for f in out["img_feats"]] == [(6, C, h // 16, w // 16), (6, C, h // 32, w // 32)]
    for k, v in out.items():
        for t in v if isinstance(v, list) else [v]:
            assert torch.isfinite(t).all(), k
    boxes = out["boxes"][-1, 0]
    assert (boxes[:, 0].abs() <= 51.2).all() and (boxes[:, 1].abs() <= 51.2).all()
    assert (boxes[:, 2] >= -5).all() and (boxes[:, 2] <= 3).all() and (boxes[:, 3:6] > 0).all()
    # the nuScenes rig sees almost every BEV cell, each cell from ~1-2 cameras
    seen = out["bev_cam_mask"][0].amax(0)
    assert seen.mean() > 0.95
    assert 1.0 <= out["bev_cam_mask"][0].sum(0)[seen > 0].mean() <= 2.0

    dets = decode_detections(out, score_threshold=0.0, topk=20)
    assert len(dets) == 1 and len(dets[0]) == 20
    assert np.all(np.diff(dets[0].scores) <= 0) and dets[0].boxes.shape == (20, 9)
    assert len(decode_detections(out, score_threshold=1.1, topk=20)[0]) == 0


def test_learned_query_mode_and_batch2():
    torch.manual_seed(0)
    model = BEVDetector("nano", query_init="learned", dense_head=False, bev_h=16, bev_w=16).eval()
    img, k, t = rig_inputs(model.cfg, batch=2)
    with torch.no_grad():
        out = model(img, k, t)
    assert out["cls_logits"].shape == (3, 2, 150, 10) and "heatmap" not in out
    # samples are independent: sample 1 alone gives the same result
    with torch.no_grad():
        single = model(img[1:], k[1:], t[1:])
    torch.testing.assert_close(single["boxes"][:, 0], out["boxes"][:, 1], atol=1e-4, rtol=1e-4)
    # N(0,1) queries + xavier reference layer: references spread over the grid, not collapsed
    ref = out["reference_points"][0, 0]
    assert ref[:, 0].std() > 0.1 and ref[:, 1].std() > 0.1


def test_named_configs_parameter_counts():
    for name, ref in REFERENCE_PARAMS_M.items():
        n = count_parameters(name) / 1e6
        assert abs(n - ref) / ref < 0.05, (name, n, ref)
    assert count_parameters("nano") < 5e6
    table = describe(with_counts=False)
    assert all(n in table for n in ("nano", "tiny", "small", "base"))


@pytest.mark.parametrize("name", ["tiny", "small", "base"])
def test_named_configs_forward_at_small_input(name):
    """The real architectures (depth, levels, layers, widths) at a small image and BEV grid."""
    cfg = get_config(name, image_size=(64, 128), bev_h=8, bev_w=8, num_queries=16)
    torch.manual_seed(0)
    model = BEVDetector(cfg).eval()
    img, k, t = rig_inputs(cfg)
    with torch.no_grad():
        out = model(img, k, t)
    assert out["cls_logits"].shape == (6, 1, 16, 10) and out["bev"].shape == (1, 64, 256)
    assert len(out["img_feats"]) == cfg.num_levels
    assert torch.isfinite(out["boxes"]).all()


def test_parameter_groups_and_layer_names(nano):
    groups = nano.param_groups()
    assert list(groups) == ["backbone", "neck", "encoder", "decoder", "heads"]
    assert sum(len(v) for v in groups.values()) == len(list(nano.parameters()))
    modules = dict(nano.named_modules())
    assert isinstance(modules[FIRST_LAYER], torch.nn.Conv2d)
    finals = nano.final_layer_names()
    cfg = nano.cfg
    assert len(finals) == 2 * cfg.dec_layers + 2
    assert "heads.cls_branches.0.out" in finals and "heads.dense.heatmap_out" in finals


def test_projection_matches_numpy_geometry():
    """Torch projection == qdbev_core.geometry.project_points, pixel-centre normalization."""
    k, t = rig_arrays(352 / 1600)
    h, w = 198, 352
    rng = np.random.default_rng(0)
    pts = rng.uniform([-40, -40, -3], [40, 40, 3], size=(500, 3))
    uv, valid = project_to_cameras(
        torch.tensor(pts, dtype=torch.float32), torch.tensor(k, dtype=torch.float32)[None],
        torch.tensor(t, dtype=torch.float32)[None], (h, w),
    )
    for cam in range(6):
        uv_np, depth = project_points(pts, k[cam], t[cam])
        n_np = (uv_np + 0.5) / np.array([w, h])
        vis = (depth > 1e-5) & (n_np > 0).all(1) & (n_np < 1).all(1)
        np.testing.assert_array_equal(valid[0, cam].numpy() > 0, vis)
        np.testing.assert_allclose(uv[0, cam].numpy()[vis], n_np[vis], atol=1e-4)
    # a point 20 m straight ahead lands near the middle of CAM_FRONT only
    uv, valid = project_to_cameras(torch.tensor([[20.0, 0.0, 1.5]]), torch.tensor(k, dtype=torch.float32)[None],
                                   torch.tensor(t, dtype=torch.float32)[None], (h, w))
    assert valid[0, :, 0].tolist() == [1, 0, 0, 0, 0, 0]
    assert abs(uv[0, 0, 0, 0] - 0.5) < 0.05


def test_prev_bev_alignment_and_effect(nano, nano_inputs):
    cfg = nano.cfg
    nano.eval()
    enc = nano.encoder
    # ego moved forward one cell: a static feature at column c is now at column c - 1
    prev = torch.zeros(1, cfg.bev_h, cfg.bev_w, cfg.embed_dims)
    prev[0, 10, 20] = 1.0
    cell = cfg.bev_cell[0]
    fill = torch.zeros(1, cfg.bev_h * cfg.bev_w, cfg.embed_dims)
    aligned = enc.align_prev_bev(prev.view(1, -1, cfg.embed_dims), yaw_motion(-cell, 0.0, 0.0)[None], fill, None)
    aligned = aligned.view(1, cfg.bev_h, cfg.bev_w, -1)
    assert torch.allclose(aligned[0, 10, 19], torch.ones(cfg.embed_dims), atol=1e-5)
    assert aligned.abs().sum() == pytest.approx(cfg.embed_dims, rel=1e-4)

    with torch.no_grad():
        base = nano(*nano_inputs)
        prev_bev = torch.randn_like(base["bev"])
        motion = yaw_motion(1.5, 0.2, 0.1)[None]
        with_prev = nano(*nano_inputs, prev_bev=prev_bev, ego_motion=motion)
        other_motion = nano(*nano_inputs, prev_bev=prev_bev, ego_motion=yaw_motion(-3.0, 0.0, -0.3)[None])
        invalid = nano(*nano_inputs, prev_bev=prev_bev, ego_motion=motion, prev_valid=torch.zeros(1))
    assert (with_prev["bev"] - base["bev"]).abs().max() > 1e-2
    assert (with_prev["cls_logits"] - base["cls_logits"]).abs().max() > 1e-4
    assert (with_prev["bev"] - other_motion["bev"]).abs().max() > 1e-2
    torch.testing.assert_close(invalid["bev"], base["bev"], atol=1e-5, rtol=1e-5)
    assert with_prev["bev_state"] is with_prev["bev"]  # default: the recursive state (BEVFormer)

    # history_free_state: the state is this frame's BEV without history, in eval mode only
    nano.cfg = cfg.replace(history_free_state=True)
    try:
        with torch.no_grad():
            hf = nano(*nano_inputs, prev_bev=prev_bev, ego_motion=motion)
        torch.testing.assert_close(hf["bev_state"], base["bev"], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(hf["cls_logits"], with_prev["cls_logits"])
        nano.train()  # training never reads the state: no second encoder pass
        with torch.no_grad():
            tr = nano(*nano_inputs, prev_bev=prev_bev, ego_motion=motion)
        assert tr["bev_state"] is tr["bev"]
    finally:
        nano.cfg = cfg
        nano.eval()


def test_box_encode_decode_roundtrip():
    rng = np.random.default_rng(1)
    boxes = np.concatenate(
        [rng.uniform(-50, 50, (64, 2)), rng.uniform(-3, 2, (64, 1)), rng.uniform(0.3, 12, (64, 3)),
         rng.uniform(-math.pi, math.pi, (64, 1)), rng.uniform(-10, 10, (64, 2))], axis=1,
    )
    b = torch.tensor(boxes, dtype=torch.float32)
    codes = encode_boxes(b)
    assert codes.shape == (64, 10)
    back = decode_boxes(codes)
    torch.testing.assert_close(back[:, [0, 1, 2, 3, 4, 5, 7, 8]], b[:, [0, 1, 2, 3, 4, 5, 7, 8]], atol=1e-4, rtol=1e-5)
    dyaw = torch.remainder(back[:, 6] - b[:, 6] + math.pi, 2 * math.pi) - math.pi
    assert dyaw.abs().max() < 1e-5


def test_dense_targets_decode_back_to_boxes():
    cfg = get_config("nano")
    labels, boxes = TARGETS[0]["labels"][:4], TARGETS[0]["boxes"][:4]
    heat, index, mask, reg = build_dense_targets([(labels, boxes)], cfg, torch.device("cpu"))
    assert heat.shape == (1, 10, cfg.bev_h, cfg.bev_w) and int(mask.sum()) == 4 and heat.max() == 1.0
    reg_map = torch.zeros(1, 10, cfg.bev_h * cfg.bev_w)
    reg_map[0, :, index[0]] = reg[0].T
    outputs = {"heatmap": inverse_sigmoid(heat, 1e-6), "heatmap_reg": reg_map.view(1, 10, cfg.bev_h, cfg.bev_w)}
    det = decode_dense_detections(outputs, cfg.pc_range, score_threshold=0.99, topk=50)[0]
    assert sorted(det.labels.tolist()) == sorted(labels.tolist())
    for lb, box in zip(labels.tolist(), boxes.numpy()):
        j = int(np.argmin(np.linalg.norm(det.boxes[:, :2] - box[:2], axis=1)))
        assert det.labels[j] == lb
        np.testing.assert_allclose(det.boxes[j, :6], box[:6], atol=1e-3)
        if np.isfinite(box[7]):
            np.testing.assert_allclose(det.boxes[j, 7:], box[7:], atol=1e-3)


def test_matcher_matches_identical_predictions_exactly():
    g = torch.Generator().manual_seed(0)
    gt_boxes = TARGETS[0]["boxes"][:4].clone()
    gt_boxes[:, 7:] = torch.nan_to_num(gt_boxes[:, 7:])
    gt_labels = TARGETS[0]["labels"][:4]
    gt_codes = encode_boxes(gt_boxes)
    q = 30
    perm = torch.randperm(q, generator=g)[:4]  # where each ground truth hides among the queries
    logits = torch.full((q, 10), -6.0) + 0.1 * torch.randn(q, 10, generator=g)
    codes = encode_boxes(torch.cat([torch.rand(q, 2, generator=g) * 100 - 50, torch.zeros(q, 1),
                                    torch.rand(q, 3, generator=g) * 5 + 0.5, torch.rand(q, 3, generator=g)], 1))
    logits[perm, gt_labels] = 6.0
    codes[perm] = gt_codes
    pi, gi = HungarianMatcher().match(logits, codes, gt_labels, gt_codes)
    assert dict(zip(gi.tolist(), pi.tolist())) == {i: int(perm[i]) for i in range(4)}
    e1, e2 = HungarianMatcher().match(logits, codes, torch.zeros(0, dtype=torch.long), torch.zeros(0, 10))
    assert e1.numel() == 0 and e2.numel() == 0


def test_loss_terms_and_gradients_reach_every_parameter(nano_inputs):
    torch.manual_seed(0)
    model = BEVDetector("nano").train()
    cfg = model.cfg
    crit = DetectionLoss(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    prev = torch.randn(1, cfg.bev_h * cfg.bev_w, cfg.embed_dims)
    motion = yaw_motion(1.0, 0.0, 0.05)[None]
    # step 0: some gradients are exactly zero by design of the init (zero-initialized sampling
    # offsets / attention weights / regression outputs, as Deformable DETR), so take one step
    # and require a non-zero gradient for every trainable parameter on the second pass
    for step in range(2):
        opt.zero_grad()
        losses = crit(model(*nano_inputs, prev_bev=prev, ego_motion=motion), TARGETS)
        losses["loss"].backward()
        bad = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not torch.isfinite(p.grad).all())]
        assert not bad, bad
        if step == 0:
            opt.step()
    expected = {"loss", "loss_cls", "loss_bbox", "loss_heatmap", "loss_dense_reg"}
    expected |= {f"d{i}.loss_{n}" for i in range(cfg.dec_layers - 1) for n in ("cls", "bbox")}
    assert set(losses) == expected
    assert all(torch.isfinite(v) for v in losses.values())
    assert len(crit.last_indices[-1][0][0]) == 4  # the out-of-range box is dropped
    zero = [n for n, p in model.named_parameters() if p.requires_grad and p.grad.abs().sum() == 0]
    assert not zero, zero


def test_overfits_one_batch():
    # nano at half the input resolution keeps 30 steps at a few seconds on a busy 2-core machine
    torch.manual_seed(0)
    model = BEVDetector("nano", image_size=(64, 176)).train()
    inputs = rig_inputs(model.cfg)
    crit = DetectionLoss(model.cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    history = []
    for _ in range(30):
        losses = crit(model(*inputs), TARGETS)
        opt.zero_grad()
        losses["loss"].backward()
        opt.step()
        history.append(losses["loss"].item())
    assert np.mean(history[-5:]) < 0.6 * history[0], history


def test_onnx_export_matches_torch(nano, nano_inputs, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    nano.eval()
    wrapper = ExportWrapper(nano, with_dense=True).eval()
    img, k, t = nano_inputs
    prev = torch.randn(1, nano.cfg.bev_h * nano.cfg.bev_w, nano.cfg.embed_dims, generator=torch.Generator().manual_seed(3))
    args = (img, k, t, prev, yaw_motion(1.2, -0.3, 0.08)[None])
    path = tmp_path / "nano.onnx"
    with _quiet():
        torch.onnx.export(wrapper, args, str(path), opset_version=17, dynamo=False,
                          input_names=ExportWrapper.INPUT_NAMES, output_names=wrapper.output_names())
    wrapper.eval()
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ExportWrapper.INPUT_NAMES
    res = sess.run(None, {n: a.numpy() for n, a in zip(ExportWrapper.INPUT_NAMES, args)})
    with torch.no_grad():
        ref = wrapper(*args)
    for name, a, b in zip(wrapper.output_names(), res, ref):
        np.testing.assert_allclose(a, b.numpy(), atol=1e-4, rtol=1e-5, err_msg=name)


class _quiet:
    """Silence the exporter's TracerWarnings (constants built from shapes are intended)."""

    def __enter__(self):
        import warnings

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("ignore")

    def __exit__(self, *exc):
        return self._ctx.__exit__(*exc)


def _reference_sca(sca, query, query_pos, feats, ref_cam, mask):
    """Straightforward per-camera spatial cross-attention (every camera, separate maps)."""
    b, lq, c = query.shape
    ncam = ref_cam.shape[1]
    nh, lv, p, z = sca.heads, sca.levels, sca.points, sca.z
    q = query + query_pos
    off = sca.sampling_offsets(q).view(b, lq, nh, lv, p // z, z, 2)
    attw = torch.softmax(sca.attention_weights(q).view(b, lq, nh, lv * p), -1).view(b, lq, nh, lv, p // z, z)
    total = 0
    for n in range(ncam):
        out = 0
        for lvl, f in enumerate(feats):
            fb = f.view(b, ncam, *f.shape[1:])[:, n]  # (B, h, w, C)
            h, w = fb.shape[1:3]
            val = sca.value_proj(fb).view(b, h, w, nh, c // nh).permute(0, 3, 4, 1, 2).reshape(b * nh, c // nh, h, w)
            loc = ref_cam[:, n].view(b, lq, 1, 1, z, 2) + off[:, :, :, lvl] / torch.tensor([w, h])
            grid = (2 * loc - 1).permute(0, 2, 1, 3, 4, 5).reshape(b * nh, lq, p, 2)
            smp = torch.nn.functional.grid_sample(val, grid, align_corners=False)  # (B*h, d, Lq, P)
            wgt = (attw[:, :, :, lvl] * mask[:, n].view(b, lq, 1, 1, z)).permute(0, 2, 1, 3, 4).reshape(b * nh, 1, lq, p)
            out = out + (smp * wgt).sum(-1)
        total = total + out.view(b, nh * (c // nh), lq).transpose(1, 2)
    count = mask.amax(-1).sum(1).clamp(min=1).unsqueeze(-1)
    return query + sca.output_proj(total / count)


@pytest.mark.parametrize("k", [2, 6])
def test_spatial_cross_attention_matches_per_camera_reference(k):
    torch.manual_seed(0)
    cfg = get_config("nano", sca_cams_per_cell=k, bev_h=16, bev_w=16)
    model = BEVDetector(cfg).eval()
    sca = model.encoder.layers[0].sca
    with torch.no_grad():  # non-trivial offsets and weights
        sca.sampling_offsets.weight.normal_(0, 0.5)
        sca.attention_weights.weight.normal_(0, 0.5)
    img, kk, tt = rig_inputs(cfg)
    h, w = cfg.image_size
    with torch.no_grad():
        feats = model.extract_img_feats(img)
        values = [f.permute(0, 2, 3, 1) + 0.1 for f in feats]
        uv, valid = project_to_cameras(model.encoder.pillars, kk, tt, (h, w))
        ref_cam = uv.view(1, 6, -1, cfg.pillar_points, 2)
        mask = valid.view(1, 6, -1, cfg.pillar_points)
        q = torch.randn(1, 256, cfg.embed_dims)
        pos = torch.randn(1, 256, cfg.embed_dims)
        got = sca(q, pos, values, ref_cam, mask)
        want = _reference_sca(sca, q, pos, values, ref_cam, mask)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
