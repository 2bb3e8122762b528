"""Reference detections from the Python `ai-edge-litert` Interpreter.

Runs a model described by a Luciole manifest (models/*.toml) on one input
tensor given as raw bytes (the RGB image already scaled to the model's input
size, height x width x 3, as Luciole's pre-processing produced it), decodes
the outputs with code of its own (numpy, written apart from the Rust
decoder), and prints JSON on standard output:

    {"detections": [{"label": "person", "score": 0.91, "box": [x0, y0, x1, y1]}, ...],
     "invoke_ms": [...]}

Boxes are in pixels of a frame of --frame WIDTHxHEIGHT stretched over the
input. With --repeat N the model runs N times and every invoke is timed
(the benchmark uses this).

Run it with the venv of tests/reference/setup.
"""

import argparse
import json
import sys
import time
import tomllib
from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter


def read_labels(path, fmt):
    labels = {}
    for number, line in enumerate(path.read_text().splitlines()):
        if fmt == "lines":
            labels[number] = line.strip()
        elif line.strip():
            ident, name = line.strip().split(maxsplit=1)
            labels[int(ident)] = name.strip()
    return labels


def anchors_for(spec, width, height):
    """SSD anchors as [y, x, h, w] rows, layer by layer, row-major cells."""
    layers = spec["num_layers"]

    def scale(layer):
        if layers == 1:
            return (spec["min_scale"] + spec["max_scale"]) / 2
        return spec["min_scale"] + (spec["max_scale"] - spec["min_scale"]) * layer / (layers - 1)

    rows = []
    for layer, stride in enumerate(spec["strides"][:layers]):
        s = scale(layer)
        if layer == 0 and spec["reduce_boxes_in_lowest_layer"]:
            shapes = [(0.1, 1.0), (s, 2.0), (s, 0.5)]
        else:
            shapes = [(s, r) for r in spec["aspect_ratios"]]
            if spec["interpolated_scale_aspect_ratio"] > 0:
                following = 1.0 if layer == layers - 1 else scale(layer + 1)
                shapes.append((np.sqrt(s * following), spec["interpolated_scale_aspect_ratio"]))
        fh = -(-height // stride)
        fw = -(-width // stride)
        for y in range(fh):
            for x in range(fw):
                for sc, ratio in shapes:
                    rows.append([(y + spec["offset"]) / fh, (x + spec["offset"]) / fw,
                                 sc / np.sqrt(ratio), sc * np.sqrt(ratio)])
    return np.array(rows, dtype=np.float32)


def iou(a, b):
    inter_h = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    inter_w = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = inter_h * inter_w
    area = lambda r: max(0.0, r[2] - r[0]) * max(0.0, r[3] - r[1])
    union = area(a) + area(b) - inter
    return 0.0 if union <= 0 else inter / union


def decode_raw(output, tensors, id_to_class, min_scores, width, height):
    encodings = tensors[output["tensors"].index("box_encodings")][0]
    logits = tensors[output["tensors"].index("class_scores")][0]
    anchors = anchors_for(output["anchors"], width, height)
    scores = 1.0 / (1.0 + np.exp(-logits)) if output["score"] == "sigmoid" else logits
    sy, sx, sh, sw = output["scale_y"], output["scale_x"], output["scale_h"], output["scale_w"]
    yc = encodings[:, 0] / sy * anchors[:, 2] + anchors[:, 0]
    xc = encodings[:, 1] / sx * anchors[:, 3] + anchors[:, 1]
    h = np.exp(encodings[:, 2] / sh) * anchors[:, 2]
    w = np.exp(encodings[:, 3] / sw) * anchors[:, 3]
    boxes = np.stack([yc - h / 2, xc - w / 2, yc + h / 2, xc + w / 2], axis=1)
    candidates = []
    for anchor in range(len(anchors)):
        for ident, cls in sorted(id_to_class.items()):
            if ident in output.get("ignore_classes", []):
                continue
            score = float(scores[anchor, ident])
            if score >= min_scores[cls]:
                candidates.append((cls, score, boxes[anchor]))
    # Highest score first (stable), greedy suppression within each class.
    order = sorted(range(len(candidates)), key=lambda i: -candidates[i][1])
    kept = []
    for i in order:
        if len(kept) == output.get("max_detections", 100):
            break
        cls, score, box = candidates[i]
        if all(k[0] != cls or iou(k[2], box) <= output["iou_threshold"] for k in kept):
            kept.append(candidates[i])
    return kept


def decode_postprocess(output, tensors, id_to_class, min_scores):
    role = {name: tensors[i] for i, name in enumerate(output["tensors"])}
    boxes, classes, scores = role["boxes"][0], role["classes"][0], role["scores"][0]
    count = int(role["count"].reshape(-1)[0])
    kept = []
    for i in range(min(count, len(scores))):
        cls = id_to_class.get(int(round(float(classes[i]))))
        if cls is not None and scores[i] >= min_scores[cls]:
            kept.append((cls, float(scores[i]), boxes[i]))
    return kept


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", required=True, type=Path)
    parser.add_argument("--model-dir", required=True, type=Path)
    parser.add_argument("--input", required=True, type=Path, help="raw RGB bytes, HxWx3")
    parser.add_argument("--frame", required=True, help="WIDTHxHEIGHT of the original frame")
    parser.add_argument("--min-score", type=float, default=0.5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()

    manifest = tomllib.loads(args.manifest.read_text())
    spec_in, output = manifest["input"], manifest["output"]
    labels = read_labels(args.model_dir / manifest["labels"]["file"], manifest["labels"]["format"])
    name_to_id = {name: ident for ident, name in labels.items()}
    id_to_class = {name_to_id[label]: cls for cls, label in manifest["classes"].items()}
    min_scores = {cls: args.min_score for cls in manifest["classes"]}
    frame_w, frame_h = (int(v) for v in args.frame.split("x"))

    width, height = spec_in["width"], spec_in["height"]
    pixels = np.frombuffer(args.input.read_bytes(), dtype=np.uint8)
    if pixels.size != width * height * 3:
        sys.exit(f"{args.input}: {pixels.size} bytes, expected {width * height * 3}")
    pixels = pixels.reshape(1, height, width, 3)
    if spec_in["type"] == "float32":
        low, high = spec_in["range"]
        tensor = (np.float32(low) + np.float32(high - low) * pixels.astype(np.float32)
                  / np.float32(255.0)).astype(np.float32)
    else:
        tensor = pixels

    interpreter = Interpreter(model_path=str(args.model_dir / manifest["file"]),
                              num_threads=args.threads)
    interpreter.allocate_tensors()
    input_index = interpreter.get_input_details()[0]["index"]
    invoke_ms = []
    for _ in range(args.repeat):
        interpreter.set_tensor(input_index, tensor)
        start = time.perf_counter()
        interpreter.invoke()
        invoke_ms.append((time.perf_counter() - start) * 1000.0)
    tensors = [interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()]

    if output["kind"] == "postprocess":
        kept = decode_postprocess(output, tensors, id_to_class, min_scores)
    else:
        kept = decode_raw(output, tensors, id_to_class, min_scores, width, height)

    def pixels_of(box):
        clamp = lambda v, hi: min(max(float(v), 0.0), float(hi))
        return [clamp(box[1] * frame_w, frame_w), clamp(box[0] * frame_h, frame_h),
                clamp(box[3] * frame_w, frame_w), clamp(box[2] * frame_h, frame_h)]

    detections = [{"label": cls, "score": score, "box": pixels_of(box)} for cls, score, box in kept]
    json.dump({"detections": detections, "invoke_ms": invoke_ms}, sys.stdout)
    print()


if __name__ == "__main__":
    main()
