# Exports a VQA network whose question encoder is the real pretrained
# all-MiniLM-L6-v2 (BERT: 6 layers, 384 wide, 22M parameters, read from the
# model.safetensors that `scripts/minilm.sh` installs) with its own WordPiece
# tokenizer, and a small image trunk, as a TorchScript archive with a vpd
# sidecar in the version-2 contract:
#   forward(images [B,3,S,S], input_ids [B,L], attention_mask [B,L]) -> [B, answers]
#
# Usage: python export-minilm-vqa.py MODEL_DIR OUT_STEM KIND ANSWERS_JSON [IMAGE_SIZE]
#   MODEL_DIR  the folder scripts/minilm.sh prints
#   OUT_STEM   writes OUT_STEM.pt, OUT_STEM.json (the sidecar) and, beside
#              them, tokenizer.json (MiniLM's, which the sidecar names)
#   KIND       vqa-student or gqa-teacher
# Needs only torch (no transformers, no safetensors package).
import json
import math
import os
import shutil
import struct
import sys

import torch
import torch.nn.functional as F
from torch import nn


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    kinds = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "I64": torch.int64}
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        start, end = t["data_offsets"]
        raw = bytearray(data[start:end])
        out[name] = torch.frombuffer(raw, dtype=kinds[t["dtype"]]).reshape(t["shape"]).clone()
    return out


class Attention(nn.Module):
    def __init__(self, hidden: int, heads: int, eps: float):
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)
        self.dense = nn.Linear(hidden, hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=eps)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        b, l, h = x.shape
        d = h // self.heads
        q = self.query(x).view(b, l, self.heads, d).transpose(1, 2)
        k = self.key(x).view(b, l, self.heads, d).transpose(1, 2)
        v = self.value(x).view(b, l, self.heads, d).transpose(1, 2)
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d) + bias, dim=-1)
        ctx = (att @ v).transpose(1, 2).reshape(b, l, h)
        return self.LayerNorm(x + self.dense(ctx))


class Layer(nn.Module):
    def __init__(self, hidden: int, heads: int, inter: int, eps: float):
        super().__init__()
        self.attention = Attention(hidden, heads, eps)
        self.intermediate = nn.Linear(hidden, inter)
        self.output = nn.Linear(inter, hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=eps)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        x = self.attention(x, bias)
        return self.LayerNorm(x + self.output(F.gelu(self.intermediate(x))))


class MiniLM(nn.Module):
    """BERT as all-MiniLM-L6-v2 is, with sentence-transformers' mean pooling."""

    def __init__(self, c):
        super().__init__()
        h, eps = c["hidden_size"], c["layer_norm_eps"]
        self.word_embeddings = nn.Embedding(c["vocab_size"], h)
        self.position_embeddings = nn.Embedding(c["max_position_embeddings"], h)
        self.token_type_embeddings = nn.Embedding(c["type_vocab_size"], h)
        self.LayerNorm = nn.LayerNorm(h, eps=eps)
        self.layers = nn.ModuleList(
            [Layer(h, c["num_attention_heads"], c["intermediate_size"], eps) for _ in range(c["num_hidden_layers"])]
        )

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(ids.shape[1], device=ids.device).unsqueeze(0)
        x = self.word_embeddings(ids) + self.position_embeddings(pos) + self.token_type_embeddings(torch.zeros_like(ids))
        x = self.LayerNorm(x)
        m = mask.to(x.dtype)
        bias = (1.0 - m)[:, None, None, :] * -10000.0
        for layer in self.layers:
            x = layer(x, bias)
        w = m.unsqueeze(-1)
        return (x * w).sum(1) / w.sum(1).clamp(min=1e-9)


def rename(key):
    """Hugging Face BertModel names -> this module's."""
    k = key[len("bert."):] if key.startswith("bert.") else key
    k = k[len("embeddings."):] if k.startswith("embeddings.") else k
    k = k.replace("encoder.layer.", "layers.")
    k = k.replace("attention.self.", "attention.").replace("attention.output.dense", "attention.dense")
    k = k.replace("attention.output.LayerNorm", "attention.LayerNorm")
    k = k.replace("intermediate.dense", "intermediate").replace("output.dense", "output")
    k = k.replace("output.LayerNorm", "LayerNorm")
    return k


class MiniLMVqa(nn.Module):
    def __init__(self, c, answers: int):
        super().__init__()
        self.text = MiniLM(c)
        self.c1 = nn.Conv2d(3, 16, 5, stride=4, padding=2)
        self.c2 = nn.Conv2d(16, 32, 3, stride=2, padding=1)
        self.film = nn.Linear(c["hidden_size"], 64)
        self.head = nn.Linear(32 + c["hidden_size"], answers)

    def forward(self, images: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        q = self.text(input_ids, attention_mask)
        x = F.relu(self.c1(images))
        gb = self.film(q)
        x = self.c2(x) * (1.0 + gb[:, :32, None, None]) + gb[:, 32:, None, None]
        x = F.relu(x).mean(dim=(2, 3))
        return self.head(torch.cat([x, q], 1))


def main():
    model_dir, stem, kind, answers = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
    size = int(sys.argv[5]) if len(sys.argv) > 5 else 96
    config = json.load(open(os.path.join(model_dir, "config.json")))
    torch.manual_seed(0)
    net = MiniLMVqa(config, len(answers))
    weights = {rename(k): v.float() for k, v in read_safetensors(os.path.join(model_dir, "model.safetensors")).items()}
    weights = {k: v for k, v in weights.items() if not k.startswith("pooler.") and k != "position_ids"}
    missing, unexpected = net.text.load_state_dict(weights, strict=False)
    if missing or unexpected:
        sys.exit(f"MiniLM weights do not fit: missing {missing}, unexpected {unexpected}")
    net.eval()
    torch.jit.script(net).save(stem + ".pt")
    out_dir = os.path.dirname(os.path.abspath(stem))
    shutil.copy(os.path.join(model_dir, "tokenizer.json"), os.path.join(out_dir, "tokenizer.json"))
    sidecar = {
        "kind": kind,
        "image_size": size,
        "mean": [0.481, 0.458, 0.408],
        "std": [0.269, 0.261, 0.276],
        "tokenizer": "tokenizer.json",
        "max_len": 16,
        "answers": answers,
        "pair": False,
    }
    json.dump(sidecar, open(stem + ".json", "w"), indent=1)
    print(json.dumps({"parameters": sum(p.numel() for p in net.parameters()), "encoder": "all-MiniLM-L6-v2"}))


if __name__ == "__main__":
    main()
