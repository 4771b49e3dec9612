"""mmctr.compress: distillation, pruning and quantisation on tiny data. Each technique's run is saved,
loaded with `load_run` and scored through `mmctr.serving` and `mmctr predict` (or the serve loader);
the assertions are ones that fail when the technique does nothing: the teacher term changes the
gradients, int8 rows dequantise within half a scale, pruned layers have fewer units, bytes shrink."""

from __future__ import annotations

import copy
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from mmctr.cli import main
from mmctr.compress import run_items
from mmctr.compress.distill import DistillConfig, Ensemble, distill_loss
from mmctr.compress.prune import (
    modality_ablation,
    prunable_groups,
    prune_cross_rank,
    prune_units,
    unit_scores,
)
from mmctr.compress.quant import (
    TECHNIQUES,
    QuantSpec,
    compact_state,
    dequantize_rows,
    expand_state,
    fake_quantize,
    pack_int4,
    quantize_model,
    quantize_rows,
    remove_fake_quant,
    run_bytes,
    unpack_int4,
)
from mmctr.config import resolve_run_config
from mmctr.data.batches import iter_batches
from mmctr.data.reader import load_dataset
from mmctr.errors import ConfigError
from mmctr.serving import for_serving, request_batch, score_request
from mmctr.training.loop import predict_split
from mmctr.training.run_dir import build_model, load_run

SMALL = {
    "din": {"embedding_dim": 16, "dnn_hidden": [32, 16], "attention_hidden": [16, 8]},
    "transformer_dcn": {"embedding_dim": 16, "dnn_hidden": [32, 16], "d_model": 32, "ffn_dim": 32},
}


def _yaml(tmp: Path, model: str) -> Path:
    import yaml

    path = tmp / f"{model}.yaml"
    path.write_text(yaml.safe_dump({"model_params": SMALL[model], "train": {"max_steps": 2, "threads": 1}}))
    return path


@pytest.fixture(scope="module")
def runs(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A trained (2 steps) transformer_dcn teacher and a DIN student distilled from it."""
    tmp = tmp_path_factory.mktemp("compress")
    common = ["--data", str(tiny_data), "--epochs", "1", "--batch-size", "256", "--no-progress"]
    teacher = tmp / "teacher"
    argv = ["train", "--model", "transformer_dcn", "--config", str(_yaml(tmp, "transformer_dcn"))]
    assert main([*argv, *common, "--out", str(teacher)]) == 0
    student = tmp / "student"
    argv = ["distill", "--teacher", str(teacher), "--student", "din", "--config", str(_yaml(tmp, "din"))]
    assert main([*argv, *common, "--temperature", "2", "--weight", "0.5", "--out", str(student)]) == 0
    return {"teacher": teacher, "student": student, "tmp": tmp}


def _served_scores(run: Path, data_root: Path) -> tuple[np.ndarray, np.ndarray]:
    """(batch scores of the valid split, request scores of its first 20 rows as one request)."""
    _, model, _ = load_run(run)
    valid = load_dataset(data_root, splits=("valid",))["valid"]
    p = predict_split(model, valid)
    served = for_serving(model, bf16=False)
    req = request_batch(valid.hist[0], valid.item_id[:20], valid.likes[:20], valid.views[:20])
    return p, score_request(served, req)


def _predict_cli(run: Path, data_root: Path, out: Path) -> int:
    assert main(["predict", "--run", str(run), "--data", str(data_root), "--out", str(out)]) == 0
    with zipfile.ZipFile(out) as z:
        return len(z.read(z.namelist()[0]).decode().strip().splitlines()) - 1


# ----------------------------------------------------------------------------------------------
# distillation


def test_teacher_term_changes_the_gradients(tiny_data: Path, runs) -> None:
    _, teacher, _ = load_run(runs["teacher"])
    data = load_dataset(tiny_data, splits=("train",))
    cfg = resolve_run_config("din", overrides={"model_params": SMALL["din"]})
    student = build_model(cfg, data.items).train()
    batch = next(iter_batches(data["train"], 128))
    grads = []
    for weight in (0.0, 1.0):
        torch.manual_seed(0)
        m = copy.deepcopy(student)
        logits = m(batch)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, batch.label)
        loss = loss + distill_loss(teacher, DistillConfig(temperature=2.0, weight=weight))(m, logits, batch)
        loss.backward()
        grads.append(m.head.weight.grad.clone())
    assert not torch.allclose(grads[0], grads[1])
    assert all(p.grad is None for p in teacher.parameters())  # the teacher is not trained


def test_distilled_run_records_its_teacher_and_serves(tiny_data: Path, runs) -> None:
    facts = json.loads((runs["student"] / "run.json").read_text())["compress"]["distill"]
    assert facts["temperature"] == 2.0 and facts["weight"] == 0.5
    (t,) = facts["teachers"]
    assert t["model"] == "transformer_dcn" and len(t["model_sha256"]) == 64
    cfg, _, _ = load_run(runs["student"])
    assert cfg.model == "din"
    p, req = _served_scores(runs["student"], tiny_data)
    assert np.isfinite(p).all() and req.shape == (20,)
    assert _predict_cli(runs["student"], tiny_data, runs["tmp"] / "student.zip") > 0


def test_an_ensemble_teaches_and_bad_settings_are_refused(tiny_data: Path, runs) -> None:
    _, teacher, _ = load_run(runs["teacher"])
    _, other, _ = load_run(runs["student"])
    batch = next(iter_batches(load_dataset(tiny_data, splits=("valid",))["valid"], 16))
    with torch.no_grad():
        mean = Ensemble([teacher, other])(batch)
        assert torch.allclose(mean, (teacher(batch) + other(batch)) / 2, atol=1e-5)
    with pytest.raises(ConfigError, match="temperature"):
        DistillConfig(temperature=0)
    assert main(["distill", "--teacher", str(tiny_data), "--out", str(runs["tmp"] / "x")]) == 2


# ----------------------------------------------------------------------------------------------
# quantisation


@pytest.mark.parametrize("bits", [8, 4])
def test_rows_dequantise_within_half_a_scale(bits: int) -> None:
    w = torch.randn(50, 33) * torch.rand(50, 1) * 3
    w[0] = 0  # a padding row
    q, scale = quantize_rows(w, bits)
    back = dequantize_rows(unpack_int4(pack_int4(q), 33) if bits == 4 else q, scale)
    assert (back - w).abs().le(scale.unsqueeze(1) / 2 + 1e-6).all()
    assert back[0].eq(0).all()
    assert q.abs().max() <= (127 if bits == 8 else 7)


def test_compact_state_expands_to_what_quantize_model_holds() -> None:
    state = {"a.weight": torch.randn(10, 8), "b.bias": torch.randn(3)}
    small, meta = compact_state(state, {"a.weight": 4})
    assert small["a.weight.__q"].dtype == torch.uint8 and small["a.weight.__q"].shape == (10, 4)
    back = expand_state(small, meta)
    assert torch.equal(back["b.bias"], state["b.bias"])
    again = expand_state(*compact_state(back, {"a.weight": 4}))  # rounding is idempotent
    assert torch.equal(again["a.weight"], back["a.weight"])


def test_quantised_runs_shrink_and_reload_exactly(tiny_data: Path, runs) -> None:
    base_p, base_req = _served_scores(runs["student"], tiny_data)
    sizes = {}
    for scheme in ("int8emb", "int4emb", "int8"):
        out = runs["tmp"] / f"q_{scheme}"
        assert main(["quantize", "--run", str(runs["student"]), "--scheme", scheme, "--out", str(out)]) == 0
        sizes[scheme] = run_bytes(out)
        # the saved run scores what the in-memory quantised model scored when it was written
        metrics = json.loads((out / "metrics.json").read_text())
        p, req = _served_scores(out, tiny_data)
        from mmctr.training.metrics import auc

        valid = load_dataset(tiny_data, splits=("valid",))["valid"]
        assert auc(valid.label, p) == pytest.approx(metrics["valid_auc"], abs=1e-9)
        assert np.abs(p - base_p).max() < 0.05  # close to the fp32 run, not equal
        assert _predict_cli(out, tiny_data, runs["tmp"] / f"{scheme}.zip") > 0
        facts = json.loads((out / "run.json").read_text())["compress"]
        assert facts["quantize"] == QuantSpec.from_techniques([scheme]).to_dict()
        assert "distill" in facts  # what the source run was made by stays recorded
    fp32 = run_bytes(runs["student"])
    assert fp32 > sizes["int8emb"] > sizes["int4emb"]
    assert sizes["int8"] < fp32 / 3


def test_quantised_run_serves_through_the_serve_loader(tiny_data: Path, runs) -> None:
    pytest.importorskip("starlette")
    from mmctr.serve.ranker import load_served

    out = runs["tmp"] / "q_serve"
    assert main(["quantize", "--run", str(runs["student"]), "--scheme", "int4emb", "--out", str(out)]) == 0
    served = load_served(out, precision="fp32", candidates=20)
    valid = load_dataset(tiny_data, splits=("valid",))["valid"]
    req = request_batch(valid.hist[0], valid.item_id[:20], valid.likes[:20], valid.views[:20])
    _, model, _ = load_run(out)
    expect = score_request(for_serving(model, bf16=False), req)
    assert np.allclose(score_request(served.model, req), expect, atol=1e-6)


def test_quantisation_aware_fine_tuning_trains_through_the_rounding(tiny_data: Path, runs) -> None:
    _, model, _ = load_run(runs["student"])
    spec = QuantSpec.from_techniques(["int4emb"])
    rounded = quantize_model(copy.deepcopy(model), spec).items.id_emb.weight
    wrapped = fake_quantize(model, spec)
    emb = model.items.id_emb
    w = emb.weight  # the rounded weight the forward sees
    assert torch.equal(w, rounded)
    w.sum().backward()
    assert emb.parametrizations.weight.original.grad is not None  # straight-through
    remove_fake_quant(wrapped)
    assert not hasattr(emb, "parametrizations")
    out = runs["tmp"] / "q_qat"
    argv = ["quantize", "--run", str(runs["student"]), "--scheme", "int4emb", "--qat-epochs", "1"]
    assert main([*argv, "--batch-size", "256", "--no-progress", "--out", str(out)]) == 0
    assert json.loads((out / "run.json").read_text())["compress"]["qat"]["epochs"] == 1
    _served_scores(out, tiny_data)


def test_unknown_schemes_are_refused() -> None:
    with pytest.raises(ConfigError, match="int3"):
        QuantSpec.from_techniques(["int3"])
    with pytest.raises(ConfigError, match="linears"):
        QuantSpec(linears=4)


# ----------------------------------------------------------------------------------------------
# pruning


def test_pruning_removes_the_weakest_units_exactly(tiny_data: Path, runs) -> None:
    cfg, model, _ = load_run(runs["student"])
    valid = load_dataset(tiny_data, splits=("valid",))["valid"]
    # silence half the units of each DNN layer (batch-norm gain and shift 0: they output 0); pruning
    # half of each layer must take exactly those and change no output
    with torch.no_grad():
        for bn, n in ((model.dnn[1], 16), (model.dnn[5], 8)):
            bn.weight[:n] = 0
            bn.bias[:n] = 0
    assert unit_scores(model, prunable_groups(model, cfg)["dnn"])[0][:16].eq(0).all()
    before = predict_split(model, valid)
    pruned, pcfg, widths = prune_units(model, cfg, {"dnn": 0.5}, run_items(runs["student"]))
    assert pcfg.model_params["dnn_hidden"] == [16, 8] and widths["dnn"] == [[32, 16], [16, 8]]
    assert pruned.dnn[0].out_features == 16 and pruned.head.in_features == 8
    assert np.allclose(predict_split(pruned, valid), before, atol=1e-5)
    both, pcfg, _ = prune_units(model, cfg, {"dnn": 0.5, "attention": 0.5}, run_items(runs["student"]))
    assert pcfg.model_params["attention_hidden"] == [8, 4] and both.attention.first.out_features == 8


def test_transformer_pruning_keeps_the_cross_columns(tiny_data: Path, runs) -> None:
    cfg, model, _ = load_run(runs["teacher"])
    valid = load_dataset(tiny_data, splits=("valid",))["valid"]
    same, _, _ = prune_units(model, cfg, {"dnn": 1.0, "head": 1.0}, run_items(runs["teacher"]))
    assert np.allclose(predict_split(same, valid), predict_split(model, valid), atol=1e-5)
    half, pcfg, _ = prune_units(model, cfg, {"dnn": 0.5}, run_items(runs["teacher"]))
    assert half.head_mlp[0].in_features == model.cross.layers[0].in_features + 8
    assert np.isfinite(predict_split(half, valid)).all()


def test_cross_rank_pruning_is_the_truncated_svd_and_serves(tiny_data: Path, runs) -> None:
    cfg, model, _ = load_run(runs["teacher"])
    items = run_items(runs["teacher"])
    dim = model.cross.dim
    low, lcfg, facts = prune_cross_rank(model, cfg, 8, items)
    assert lcfg.model_params["cross_rank"] == 8 and facts["cross_weights"] == [3 * dim * dim, 3 * 2 * dim * 8]
    for full, (v, u), kept in zip(model.cross.layers, low.cross.layers, facts["energy_kept"], strict=True):
        s = torch.linalg.svdvals(full.weight.double().detach())
        err = ((full.weight.double() - (u.weight @ v.weight).double()) ** 2).sum().detach()
        # Eckart-Young: nothing better exists
        assert float(err) == pytest.approx(float((s[8:] ** 2).sum()), rel=1e-3)
        assert kept == pytest.approx(float((s[:8] ** 2).sum() / (s**2).sum()), rel=1e-6)
        assert torch.equal(u.bias, full.bias)
    out = runs["tmp"] / "lowrank"
    argv = ["prune", "--run", str(runs["teacher"]), "--cross-rank", "8", "--finetune-epochs", "0"]
    assert main([*argv, "--no-progress", "--out", str(out)]) == 0
    rcfg, reloaded, rfacts = load_run(out)  # rebuilt from config.yaml alone
    assert rcfg.model_params["cross_rank"] == 8 and rfacts["compress"]["prune"]["cross"]["rank"] == 8
    valid = load_dataset(tiny_data, splits=("valid",))["valid"]
    assert np.allclose(predict_split(reloaded, valid), predict_split(low.eval(), valid), atol=1e-6)
    assert (out / "model.safetensors").stat().st_size < (runs["teacher"] / "model.safetensors").stat().st_size
    _, req = _served_scores(out, tiny_data)
    assert np.isfinite(req).all()
    with pytest.raises(ConfigError, match="already rank 8"):
        prune_cross_rank(reloaded, rcfg, 4, items)
    with pytest.raises(ConfigError, match=f"from 1 to {dim - 1}"):
        prune_cross_rank(model, cfg, dim, items)
    scfg, student, _ = load_run(runs["student"])
    with pytest.raises(ConfigError, match="no cross network"):
        prune_cross_rank(student, scfg, 4, run_items(runs["student"]))


def test_pruned_run_is_smaller_and_serves(tiny_data: Path, runs) -> None:
    out = runs["tmp"] / "pruned"
    argv = ["prune", "--run", str(runs["student"]), "--keep", "dnn=0.5", "--keep", "attention=0.5"]
    assert main([*argv, "--batch-size", "256", "--no-progress", "--out", str(out)]) == 0
    cfg, model, facts = load_run(out)
    assert cfg.model_params["dnn_hidden"] == [16, 8]
    assert facts["compress"]["prune"]["keep"] == {"dnn": 0.5, "attention": 0.5}
    assert (out / "model.safetensors").stat().st_size < (runs["student"] / "model.safetensors").stat().st_size
    p, req = _served_scores(out, tiny_data)
    assert np.isfinite(req).all()
    assert _predict_cli(out, tiny_data, runs["tmp"] / "pruned.zip") > 0
    with pytest.raises(ConfigError, match="no prunable group"):
        prune_units(model, cfg, {"cross": 0.5}, run_items(runs["student"]))


def test_modality_ablation(tiny_data: Path, runs, capsys) -> None:
    _, model, _ = load_run(runs["student"])
    res = modality_ablation(model, load_dataset(tiny_data, splits=("valid",))["valid"])
    assert set(res) == {"all", "id", "tags", "embedding", "levels"}
    assert main(["prune", "--run", str(runs["student"]), "--modalities"]) == 0
    assert "embedding" in capsys.readouterr().out


# ----------------------------------------------------------------------------------------------
# bench system names


def test_bench_names_the_techniques(tiny_data: Path, runs) -> None:
    from mmctr.bench import spec as bench_spec
    from mmctr.bench.ours import MMCTRSystem
    from mmctr.bench.spec import BenchSettings, SystemSpec
    from mmctr.serving import make_requests

    assert set(bench_spec.TECHNIQUES) == set(TECHNIQUES)
    s = SystemSpec.parse(f"mmctr/din[from={runs['student']},max_history=8]+int4emb+int8lin@fp32")
    assert s.techniques == ["int4emb", "int8lin"] and s.params["max_history"] == 8 and s.variant == "fp32"
    assert SystemSpec.parse("mmctr/din[attention_hidden=[128,64]]@bf16").techniques == []
    with pytest.raises(ValueError, match="int3"):
        SystemSpec.parse("mmctr/din+int3")
    with pytest.raises(ValueError, match="peers"):
        SystemSpec.parse("fuxictr/din+int8")

    data = load_dataset(tiny_data, splits=("train", "valid"))
    settings = BenchSettings(data=str(tiny_data))
    sizes = {}
    for name in (f"mmctr/din[from={runs['student']}]@fp32", f"mmctr/din[from={runs['student']}]+int8@fp32"):
        system = MMCTRSystem(SystemSpec.parse(name), data, settings)
        system.reset(0)
        system.fit(1)  # loads the run: nothing trains
        p = system.predict_valid(512)
        req = make_requests(data, 1, 10, seed=0)[0]
        assert system.score_request(req)[0] == pytest.approx(p[req.row], abs=1e-5)
        out = runs["tmp"] / f"bench_{len(sizes)}"
        system.save(out)
        sizes[name] = run_bytes(out)
    small, big = sorted(sizes.values())
    assert small < big / 3
    with pytest.raises(ConfigError, match="transformer_dcn run"):
        MMCTRSystem(SystemSpec.parse(f"mmctr/din[from={runs['teacher']}]"), data, settings)
