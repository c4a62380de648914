"""Image-text sub-models end to end: real JPEG/PNG files (and broken ones) through `zimo init
--template image` and `zimo build`, served by a real server on 127.0.0.1 and called with the
official openai SDK, exported to ONNX and checked; and a tiny random-weight transformers CLIP
as a local checkpoint."""

from __future__ import annotations

import base64
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from image_fixtures import LABELS, encode, make_image_folder, shape_image
from project_fixtures import run_zimo
from serve_fixtures import LiveServer

FAST = "  budget_cpu_s: 600           # CPU-seconds of training: 5 minutes on 2 cores"


def _data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode()


def _init(tmp: Path, photos: Path, budget: float = 8) -> Path:
    r = run_zimo("init", tmp / "shelf", "--template", "image", "--data", photos)
    assert r.returncode == 0, r.stderr
    cfg = tmp / "shelf" / "zimo.yaml"
    text = cfg.read_text()
    assert FAST in text  # the template's default budget, lowered here to keep the test short
    cfg.write_text(text.replace(FAST, f"  budget_cpu_s: {budget}"))
    return tmp / "shelf"


# One small real build (decode, train, baseline, eval: ~20 s on a bf16 CPU) shared by the
# module's default tests.
@pytest.fixture(scope="module")
def image_project(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("img")
    photos = make_image_folder(tmp / "photos", per_label=30)
    proj = _init(tmp, photos)
    r = run_zimo("build", proj)
    assert r.returncode == 0, r.stderr
    return proj


def _artifact(proj: Path, stage: str) -> Path:
    return next((proj / ".zimo" / "artifacts" / stage).iterdir())


def test_ingest_quarantines_bad_files_and_drops_exif(image_project: Path):
    ingest = _artifact(image_project, "ingest")
    rejects = [json.loads(x) for x in (ingest / "rejects.jsonl").read_text().splitlines()]
    why = {Path(r["source"]).name: r["reason"] for r in rejects}
    assert why["truncated.jpg"].startswith("corrupt or truncated")
    assert why["notes.jpg"].startswith("not an image")
    assert why["tiny.png"].startswith("image too small")
    assert "label folder is empty" in why["empty_label"]
    # copy_of_1.jpg and red_circle_1.jpg are the same bytes; the PNG re-save the same pixels.
    assert sum(r.startswith("exact duplicate") for r in why.values()) == 2
    records = json.loads((ingest / "images.json").read_text())
    assert any(r["source"].endswith("with_gps.jpg") for r in records)  # kept, without EXIF
    for f in ingest.iterdir():
        blob = f.read_bytes()
        assert b"SERIAL-123456" not in blob and b"ACME Camera" not in blob, f.name
    meta = json.loads((ingest / "ingest.json").read_text())
    assert meta["labels"] == sorted(LABELS) and meta["image_size"] == 40
    html = (ingest / "report.html").read_text()
    assert (
        "data:image/png;base64," in html and "near-duplicate" in html or "exact duplicate" in html
    )


def test_build_evaluates_against_baselines(image_project: Path):
    metrics = json.loads((_artifact(image_project, "eval") / "metrics.json").read_text())
    head = metrics["headline"]
    assert set(head) == {"zimo_default", "cnn_from_scratch"}
    # Three labels told apart by colour and shape: the encoder learns them in seconds.
    assert head["zimo_default"]["accuracy"] >= 0.9, head
    assert head["zimo_default"]["recall_at_1"] >= 0.9, head
    acc = metrics["systems"]["zimo_default"]["accuracy"]
    assert acc["low"] <= acc["value"] <= acc["high"]
    html = (_artifact(image_project, "eval") / "report.html").read_text()
    assert "Confusion matrix" in html and "cnn_from_scratch" in html


def test_served_chat_and_embeddings_through_openai_sdk(image_project: Path):
    from openai import BadRequestError, OpenAI

    from zimo.serve.app import create_app
    from zimo.serve.config import ServeConfig

    cfg = ServeConfig(serve_base=False, embeddings=False, watch_s=None, log={"enabled": False},
                      limits={"max_image_bytes": 20_000, "max_images": 3})  # fmt: skip
    red = encode(shape_image("red_circle", seed=4242), "JPEG", quality=90)
    blue = encode(shape_image("blue_square", seed=4243), "PNG")
    with LiveServer(create_app(cfg, projects=[image_project])) as srv:
        oa = OpenAI(base_url=srv.url + "/v1", api_key="none", max_retries=0)
        ans = oa.chat.completions.create(model="shelf", messages=[{"role": "user", "content": [
            {"type": "text", "text": "what is this?"},
            {"type": "image_url", "image_url": {"url": _data_url(red, "image/jpeg")}}]}])  # fmt: skip
        assert ans.choices[0].message.content == "red_circle"
        probs = ans.model_extra["zimo"]["label_probs"]
        assert set(probs) == set(LABELS) and abs(sum(probs.values()) - 1) < 1e-3
        emb = oa.embeddings.create(model="shelf", input=[
            _data_url(red), _data_url(blue), "a photo of a red circle.", "a photo of a blue square."])  # fmt: skip
        v = np.array([d.embedding for d in emb.data])
        assert v.shape == (4, 384) and np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-3)
        # Words find the right image in the shared space.
        assert v[2] @ v[0] > v[2] @ v[1] and v[3] @ v[1] > v[3] @ v[0]

        def chat(url):
            return oa.chat.completions.create(model="shelf", messages=[{"role": "user",
                "content": [{"type": "image_url", "image_url": {"url": url}}]}])  # fmt: skip

        with pytest.raises(BadRequestError, match="only data URLs"):
            chat("https://example.com/cat.jpg")
        with pytest.raises(BadRequestError, match="cannot be used"):
            chat(_data_url(b"plain text, not an image"))
        big = encode(Image.fromarray(np.random.default_rng(0).integers(0, 255, (120, 120, 3),
                                                                        dtype=np.uint8)), "PNG")  # fmt: skip
        import httpx

        c = httpx.Client(base_url=srv.url, timeout=60)
        r = c.post("/v1/chat/completions", json={"model": "shelf", "messages": [{"role": "user",
                   "content": [{"type": "image_url", "image_url": {"url": _data_url(big)}}]}]})  # fmt: skip
        assert r.status_code == 413 and "max_image_bytes" in r.json()["error"]["message"]
        r = c.post("/v1/embeddings", json={"model": "shelf", "input": [_data_url(red)] * 4})
        assert r.status_code == 413 and "max_images" in r.json()["error"]["message"]
        r = c.post("/v1/chat/completions", json={"model": "shelf", "messages": [
            {"role": "user", "content": "no image here"}]})  # fmt: skip
        assert r.status_code == 400 and "image_url" in r.json()["error"]["message"]


def test_onnx_export_verifies(image_project: Path):
    r = run_zimo("export", image_project, "--json")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["passed"] and rep["kind"] == "image"
    assert rep["verify"]["onnxruntime"]["agreement"] >= 0.995
    import onnxruntime as ort

    sess = ort.InferenceSession(str(Path(rep["output"]) / "model.onnx"))
    px = np.zeros((1, 3, 40, 40), np.float32)
    emb, probs = sess.run(None, {"pixels": px})
    assert emb.shape == (1, 384) and probs.shape == (1, 3)


def test_manifests_and_zip(tmp_path: Path):
    from zimo.image.config import ImageConfig
    from zimo.image.curate import curate_images
    from zimo.image.ingest import list_sources

    photos = make_image_folder(tmp_path / "p", per_label=4, bad=False)
    rows = [f"{lab}/{f.name},{lab}" for lab in LABELS for f in sorted((photos / lab).iterdir())]
    (tmp_path / "m.csv").write_text("path,label\n" + "\n".join(rows) + "\nmissing.jpg,red_circle\n")
    (tmp_path / "m.csv").rename(photos / "m.csv")
    src, rej = list_sources(photos / "m.csv", ImageConfig(), "label")
    cur = curate_images(src, ImageConfig(near_dup_bits=0), None)
    assert len(cur.records) == 12 and cur.labels == sorted(LABELS)
    assert any(r["reason"] == "file not found" for r in cur.rejects)
    jl = tmp_path / "c.jsonl"
    jl.write_text("\n".join(json.dumps({"path": str(photos / LABELS[0] / f.name),
                                        "caption": "a red disc on a pale background"})
                            for f in sorted((photos / LABELS[0]).iterdir())) + "\nnot json\n")  # fmt: skip
    src, rej = list_sources(jl, ImageConfig(), "label")
    assert len(src) == 4 and all(s.caption for s in src) and "not valid JSON" in rej[0]["reason"]
    z = tmp_path / "photos.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for lab in LABELS:
            for f in sorted((photos / lab).iterdir()):
                zf.write(f, f"export/{lab}/{f.name}")
    src, _ = list_sources(z, ImageConfig(), "label")
    cur = curate_images(src, ImageConfig(near_dup_bits=0), None)
    assert len(cur.records) == 12 and cur.labels == sorted(LABELS)


def test_bad_inputs_are_one_line(tmp_path: Path):
    empty = tmp_path / "photos"
    (empty / "cats").mkdir(parents=True)
    (empty / "cats" / "a.jpg").write_bytes(b"not a jpeg")
    (empty / "dogs").mkdir()
    proj = _init(tmp_path, empty)
    r = run_zimo("build", proj)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "no readable image in the data" in r.stderr
    (proj / "zimo.yaml").write_text("name: x\ntask: label\nlabels: [a, b]\ndata: {path: d}\n"
                                    "train: {method: image}\n")  # fmt: skip
    r = run_zimo("build", proj)
    assert r.returncode == 2 and "does not fit task: label" in r.stderr
    (proj / "zimo.yaml").write_text("name: x\ntask: image\ndata: {path: d}\nimage: {flipp: 1}\n")
    r = run_zimo("build", proj)
    assert r.returncode == 2 and "did you mean 'flip'" in r.stderr


@pytest.mark.slow
@pytest.mark.parametrize("head", ["linear_probe", "lora"])
def test_local_clip_checkpoint(tmp_path: Path, head: str):
    """A transformers CLIPModel folder through `zimo build`: the head's row beside the untuned
    zero-shot (and, for LoRA, linear-probe) rows, served labels, a verified ONNX export."""
    from clip_fixtures import make_tiny_clip

    clip = make_tiny_clip(tmp_path / "tiny-clip")
    photos = make_image_folder(tmp_path / "photos", per_label=12, bad=False)
    proj = _init(tmp_path, photos)
    text = (proj / "zimo.yaml").read_text()
    extra = "  head: lora\n  lora: {max_epochs: 3, budget_cpu_s: 60}\n" if head == "lora" else ""
    text = text.replace("  method: image\n", f"  method: clip\n  checkpoint: {clip}\n{extra}")
    text = text.replace("  budget_cpu_s: 8\n", "")
    (proj / "zimo.yaml").write_text(text + "eval: {n_boot: 200}\n")
    r = run_zimo("build", proj)
    assert r.returncode == 0, r.stderr
    metrics = json.loads((_artifact(proj, "eval") / "metrics.json").read_text())
    want = {"clip", "clip_zero_shot", "cnn_from_scratch"}
    if head == "lora":
        want.add("clip_linear_probe")
        assert "LoRA" in metrics["systems"]["clip"]["description"]
    assert want <= set(metrics["headline"]), metrics["headline"]
    from zimo.image.predictor import ImagePredictor

    pred = ImagePredictor(_artifact(proj, "train"))
    label, probs = pred.label(encode(shape_image("red_circle", seed=7), "PNG"))
    assert label in LABELS and abs(sum(probs.values()) - 1) < 1e-3
    r = run_zimo("export", proj, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["passed"]
    (proj / "zimo.yaml").write_text(text.replace(str(clip), str(tmp_path / "nowhere")))
    r = run_zimo("build", proj)
    assert r.returncode == 2 and "cannot load the CLIP checkpoint" in r.stderr


def test_captions_train_beside_labels_and_alone_are_refused(tmp_path: Path):
    import torch

    from zimo.errors import DataError
    from zimo.image.config import ImageConfig
    from zimo.image.curate import curate_images
    from zimo.image.fit import FitSettings
    from zimo.image.ingest import list_sources
    from zimo.image.train import train_image_text

    photos = make_image_folder(tmp_path / "p", per_label=3, bad=False)
    rows = [{"path": f"{lab}/{f.name}", "caption": f"a {lab.replace('_', ' ')} drawing"}
            for lab in LABELS for f in sorted((photos / lab).iterdir())]  # fmt: skip
    (photos / "c.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    src, _ = list_sources(photos / "c.jsonl", ImageConfig(), "label")
    with pytest.raises(DataError, match="at least two labels"):
        curate_images(src, ImageConfig(), None)
    # Labels and captions together: both losses train (the caption term is finite and used).
    rng = np.random.default_rng(0)
    lv = rng.normal(size=(3, 384)).astype(np.float32)
    lv /= np.linalg.norm(lv, axis=1, keepdims=True)
    caps = rng.normal(size=(16, 384)).astype(np.float32)
    caps[::2] = 0  # half the rows have no caption
    x = torch.randint(0, 255, (16, 3, 16, 16), dtype=torch.uint8)
    y = torch.tensor([i % 3 for i in range(16)])
    settings = FitSettings(budget_cpu_s=5, max_epochs=2, batch_size=8, seed=1)
    losses: list[float] = []
    model, rep = train_image_text(x, y, lv, settings, (8, 16), captions=caps,
                                  on_step=lambda p, loss: losses.append(loss))  # fmt: skip
    assert rep.steps == 4 and all(np.isfinite(losses))
    _, rep_plain = train_image_text(x, y, lv, settings, (8, 16))
    assert rep_plain.final_loss != pytest.approx(rep.final_loss)


def test_bn_recalibration_samples_across_sorted_data():
    """Folders (and CIFAR's parquet) list images by label: the BatchNorm pass must not see
    only the first label's images."""
    import torch

    from zimo.image.fit import FitSettings, recalibrate_bn

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 1), torch.nn.BatchNorm2d(2))
    with torch.no_grad():
        model[0].weight.fill_(1.0)
        model[0].bias.zero_()
    images = torch.cat([torch.zeros(256, 3, 4, 4), torch.full((256, 3, 4, 4), 255.0)])
    recalibrate_bn(model, images.to(torch.uint8), FitSettings(batch_size=64), max_images=128)
    mean = float(model[1].running_mean[0])  # each channel sums 3 inputs: 0 or 765
    assert 765 * 0.3 < mean < 765 * 0.7, mean


def _shape_set(per_label: int, seed0: int = 0) -> tuple[np.ndarray, list[dict]]:
    px, records = [], []
    for k in range(per_label):
        for lab in LABELS:
            px.append(np.asarray(shape_image(lab, seed=seed0 + 97 * k + LABELS.index(lab),
                                             size=32)).transpose(2, 0, 1))  # fmt: skip
            records.append({"id": len(records), "label": lab})
    return np.stack(px), records


def test_clip_lora_trains_saves_labels_and_exports(tmp_path: Path):
    """LoRA on a tiny random-weight transformers CLIP: the loss falls on a separable set, the
    adapter saves and loads merged into the tower, labels come out and the ONNX export of the
    merged tower agrees with the in-process model."""
    from clip_fixtures import make_tiny_clip
    from zimo.image.builder import train_submodel
    from zimo.image.config import ClipTrainConfig, ImageConfig
    from zimo.image.export import export_image
    from zimo.image.predictor import ImagePredictor

    clip = make_tiny_clip(tmp_path / "tiny-clip")
    pixels, records = _shape_set(per_label=4)
    # Bounded by epochs, not CPU time, so the run is the same on a busy machine.
    tcfg = ClipTrainConfig(checkpoint=str(clip), head="lora", batch_size=6,
                           lora={"budget_cpu_s": 600, "max_epochs": 15, "lr": 1e-2, "r": 4})  # fmt: skip
    meta = {"labels": sorted(LABELS), "image_size": 32}
    rows: list[dict] = []
    out = tmp_path / "train"
    out.mkdir()
    summary = train_submodel(pixels, records, list(range(len(records))), meta, ImageConfig(),
                             tcfg, out, progress=rows.append)  # fmt: skip
    lora = summary["lora"]
    assert lora["stopped_by"] == "epochs" and lora["steps"] == 30, lora
    losses = [r["loss"] for r in rows]
    assert np.mean(losses[-4:]) < 0.5 * np.mean(losses[:4]), losses
    assert lora["trainable_params"] > 0 and rows[-1]["images_per_s"] > 0
    assert (out / "lora" / "adapter_config.json").is_file()
    pred = ImagePredictor(out)
    assert type(pred.model.model).__name__ == "CLIPModel"  # merged: no adapter wrappers left
    got, _ = pred.label_pixels(pixels)
    truth = [r["label"] for r in records]
    assert np.mean([g == t for g, t in zip(got, truth, strict=True)]) >= 0.9
    label, probs = pred.label(encode(shape_image("blue_square", seed=5), "PNG"))
    assert label in LABELS and abs(sum(probs.values()) - 1) < 1e-3
    # The untuned checkpoint answers differently: the adapter really is applied on load.
    from zimo.image.clip import load_clip

    assert (
        np.abs(load_clip(pred.spec).embed_images(pixels[:3]) - pred.embed_pixels(pixels[:3])).max()
        > 1e-3
    )
    (out / "zimo_model.json").write_text("{}")
    rep = export_image(out, "onnx", tmp_path / "onnx", pixels)
    assert rep["passed"], rep["verify"]


def test_clip_config_is_checked():
    from pydantic import ValidationError

    from zimo.image.config import ClipTrainConfig

    with pytest.raises(ValidationError, match="only with head: lora"):
        ClipTrainConfig(checkpoint="x", head="linear_probe", lora={"r": 4})
    with pytest.raises(ValidationError, match="needs model_name"):
        ClipTrainConfig(checkpoint="x.pt", source="open_clip")
    with pytest.raises(ValidationError, match="only to source: open_clip"):
        ClipTrainConfig(checkpoint="x", model_name="ViT-B-32")


class _ImageHost:
    """A real HTTP server on 127.0.0.1 serving a PNG, an oversize file, a 404 and redirects."""

    def __init__(self, png: bytes, big: bytes):
        import http.server
        import threading

        files = {"/red.png": png, "/big.png": big}

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - the stdlib's name
                port = self.server.server_address[1]
                if self.path in files:
                    body = files[self.path]
                    self.send_response(200)
                    self.send_header("Content-Type", "image/png")
                    if self.path != "/big.png":  # the big one streams without a length
                        self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                elif self.path in ("/hop", "/away"):
                    host = "127.0.0.1" if self.path == "/hop" else "localhost"
                    self.send_response(302)
                    self.send_header("Location", f"http://{host}:{port}/red.png")
                    self.end_headers()
                else:
                    self.send_error(404)

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *a):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_remote_image_urls_only_from_allowed_hosts(image_project: Path):
    import httpx
    from openai import OpenAI

    from zimo.serve.app import create_app
    from zimo.serve.config import ServeConfig

    png = encode(shape_image("red_circle", seed=4244), "PNG")
    big = png + b"\0" * 60_000
    remote = {"enabled": True, "allowed_hosts": ["127.0.0.1"], "timeout_s": 5, "max_bytes": 40_000}
    cfg = ServeConfig(serve_base=False, embeddings=False, watch_s=None, log={"enabled": False},
                      images={"remote_urls": remote})  # fmt: skip
    with _ImageHost(png, big) as host, LiveServer(create_app(cfg, projects=[image_project])) as srv:
        oa = OpenAI(base_url=srv.url + "/v1", api_key="none", max_retries=0)
        ans = oa.chat.completions.create(model="shelf", messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": host.url + "/red.png"}}]}])  # fmt: skip
        assert ans.choices[0].message.content == "red_circle"
        c = httpx.Client(base_url=srv.url, timeout=60)

        def chat(url: str) -> httpx.Response:
            return c.post("/v1/chat/completions", json={"model": "shelf", "messages": [
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}]})  # fmt: skip

        assert chat(host.url + "/hop").status_code == 200  # a redirect within the list
        r = chat(host.url + "/big.png")
        assert r.status_code == 413 and "images.remote_urls.max_bytes (40000" in r.text
        r = chat(host.url + "/missing.png")
        assert r.status_code == 400 and "HTTP 404" in r.json()["error"]["message"]
        r = chat(host.url + "/away")  # redirected off the list: refused, never fetched
        assert (
            r.status_code == 400
            and "'localhost' is not in images.remote_urls.allowed_hosts" in r.text
        )
        r = chat("https://example.com/cat.jpg")
        assert r.status_code == 400 and "allowed_hosts" in r.json()["error"]["message"]
    # Off by default: the refusal names the setting that would allow it.
    cfg = ServeConfig(serve_base=False, embeddings=False, watch_s=None, log={"enabled": False})
    with _ImageHost(png, big) as host, LiveServer(create_app(cfg, projects=[image_project])) as srv:
        r = httpx.post(srv.url + "/v1/chat/completions", timeout=60, json={"model": "shelf",
                       "messages": [{"role": "user", "content": [{"type": "image_url",
                                     "image_url": {"url": host.url + "/red.png"}}]}]})  # fmt: skip
        assert r.status_code == 400 and "images.remote_urls.enabled is false" in r.text
    with pytest.raises(ValueError, match="needs allowed_hosts"):
        ServeConfig(images={"remote_urls": {"enabled": True}})


def test_open_clip_local_checkpoint(tmp_path: Path):
    """open_clip from a model config and a local weights file: zero-shot, linear probe and
    LoRA heads train, load, label and export (random weights: the heads, not the accuracy)."""
    pytest.importorskip("open_clip", reason="open_clip is the optional `clip` extra "
                        "(pip install 'zimo[clip]'); its local-checkpoint path is untested here")  # fmt: skip
    from clip_fixtures import make_tiny_open_clip
    from zimo.errors import ConfigError
    from zimo.image.builder import train_submodel
    from zimo.image.config import ClipTrainConfig, ImageConfig
    from zimo.image.export import export_image
    from zimo.image.predictor import ImagePredictor

    config, weights = make_tiny_open_clip(tmp_path / "oc")
    pixels, records = _shape_set(per_label=4)
    meta = {"labels": sorted(LABELS), "image_size": 32}
    lora = {"budget_cpu_s": 600, "max_epochs": 15, "lr": 1e-2, "r": 4}
    for head in ("zero_shot", "linear_probe", "lora"):
        tcfg = ClipTrainConfig(source="open_clip", model_name=str(config), checkpoint=str(weights),
                               head=head, batch_size=6, **({"lora": lora} if head == "lora" else {}))  # fmt: skip
        out = tmp_path / head
        out.mkdir()
        rows: list[dict] = []
        summary = train_submodel(pixels, records, list(range(len(records))), meta, ImageConfig(),
                                 tcfg, out, progress=rows.append)  # fmt: skip
        pred = ImagePredictor(out)
        label, probs = pred.label(encode(shape_image("red_circle", seed=9), "PNG"))
        assert label in LABELS and abs(sum(probs.values()) - 1) < 1e-3
        if head == "lora":
            losses = [r["loss"] for r in rows]
            assert summary["lora"]["steps"] == 30
            assert np.mean(losses[-4:]) < 0.5 * np.mean(losses[:4]), losses
            got, _ = pred.label_pixels(pixels)
            assert np.mean([g == r["label"] for g, r in zip(got, records, strict=True)]) >= 0.9
        (out / "zimo_model.json").write_text("{}")
        rep = export_image(out, "onnx", tmp_path / f"onnx-{head}", pixels)
        assert rep["passed"], (head, rep["verify"])
    from zimo.image.clip import load_clip

    with pytest.raises(ConfigError, match="cannot load the CLIP checkpoint"):
        load_clip({"source": "open_clip", "model_name": str(config),
                   "checkpoint": str(tmp_path / "nowhere.pt")})  # fmt: skip


def test_training_bar_shows_images_per_second():
    """The image trainers' rows carry images_per_s, and the bar labels it img/s (it read
    "tok/s -" when it was the LM bar unchanged)."""
    from types import SimpleNamespace

    from rich.console import Console

    from zimo.stages.train import _progress_bar

    console = Console(record=True, width=120, force_terminal=False)
    with _progress_bar(SimpleNamespace(console=console), "img/s", "images_per_s") as update:
        update({"step": 500, "total_steps": 1000, "loss": 0.5, "images_per_s": 321.4})
    text = console.export_text()
    assert "321 img/s" in text and "tok/s" not in text, text
