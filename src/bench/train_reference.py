# The VQA student's network and training loop in PyTorch, for
# `vpd bench train`: the same FiLM network as src/nn/film.rs, loaded with
# the weights vpd wrote, trained on the same batches with Adam.
#
# Usage: python train_reference.py DIR
# DIR holds config.json, weights.json + weights.bin, images.bin, tokens.bin,
# labels.bin (written by vpd). Commands arrive as JSON lines on stdin:
#   {"batch": B, "start": I, "steps": K}
# and each gets one JSON line back: {"seconds": S, "first_loss": L}.
# The first line it writes names its torch and its malloc settings.
import json
import os
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn


class Film(nn.Module):
    def __init__(self, c):
        super().__init__()
        a, b, cc = c["channels"]
        g = max(1, c.get("glimpses", 1))
        self.g = g
        pooled = (g + 1) * cc
        joint = (2 * pooled if c["pair"] else pooled) + c["hidden"]
        self.embed = nn.Embedding(c["vocab"], c["word_dim"])
        self.gru = nn.GRU(c["word_dim"], c["hidden"], batch_first=True)
        self.c1 = nn.Conv2d(3, a, 3, stride=2, padding=1)
        self.c2 = nn.Conv2d(a, b, 3, stride=2, padding=1)
        self.c3 = nn.Conv2d(b + 2, cc, 3, stride=1, padding=1)
        self.film2 = nn.Linear(c["hidden"], 2 * b)
        self.film3 = nn.Linear(c["hidden"], 2 * cc)
        for k in range(g):
            setattr(self, f"att_q{k}", nn.Linear(c["hidden"], cc))
            setattr(self, f"att{k}", nn.Conv2d(cc, 1, 1))
        self.head1 = nn.Linear(joint, 128)
        self.head2 = nn.Linear(128, c["classes"])

    @staticmethod
    def film(x, gb):
        c = x.shape[1]
        g = gb[:, :c, None, None]
        b = gb[:, c:, None, None]
        return F.relu(x * (g + 1.0) + b)

    def encode_image(self, images, q):
        x = F.relu(self.c1(images))
        x = self.film(self.c2(x), self.film2(q))
        bsz, _, h, w = x.shape
        ys = torch.linspace(-1.0, 1.0, h).view(1, 1, h, 1).expand(bsz, 1, h, w)
        xs = torch.linspace(-1.0, 1.0, w).view(1, 1, 1, w).expand(bsz, 1, h, w)
        x = torch.cat([x, ys, xs], 1)
        x = self.film(self.c3(x), self.film3(q))
        flat = x.reshape(bsz, x.shape[1], -1)
        parts = []
        for k in range(self.g):
            keyed = x * getattr(self, f"att_q{k}")(q)[:, :, None, None]
            weights = getattr(self, f"att{k}")(keyed).reshape(bsz, -1).softmax(-1).unsqueeze(1)
            parts.append((flat * weights).sum(-1))
        parts.append(flat.mean(-1))
        return torch.cat(parts, 1)

    def forward(self, images, tokens):
        _, h = self.gru(self.embed(tokens))
        q = h.squeeze(0)
        pooled = self.encode_image(images, q)
        return self.head2(F.relu(self.head1(torch.cat([pooled, q], 1))))


def read(path, dtype, shape):
    raw = bytearray(open(path, "rb").read())
    return torch.frombuffer(raw, dtype=dtype).view(shape).clone()


def main():
    d = sys.argv[1]
    cfg = json.load(open(f"{d}/config.json"))
    torch.set_num_threads(cfg["threads"])
    torch.manual_seed(0)
    net = Film(cfg["film"])
    manifest = json.load(open(f"{d}/weights.json"))
    flat = read(f"{d}/weights.bin", torch.float32, [-1])
    state, off = {}, 0
    for m in manifest:
        n = 1
        for s in m["shape"]:
            n *= s
        state[m["name"]] = flat[off : off + n].view(m["shape"])
        off += n
    missing, unexpected = net.load_state_dict(state, strict=True), None
    del missing, unexpected
    n, s, length = cfg["examples"], cfg["film"]["image_size"], cfg["max_len"]
    images = read(f"{d}/images.bin", torch.float32, [n, 3, s, s])
    tokens = read(f"{d}/tokens.bin", torch.int64, [n, length])
    labels = read(f"{d}/labels.bin", torch.int64, [n])
    opt = torch.optim.Adam(net.parameters(), lr=cfg["lr"])
    malloc = {k: os.environ.get(k) for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")}
    print(json.dumps({"ready": True, "torch": torch.__version__, "malloc": malloc}), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        b, start, steps = cmd["batch"], cmd["start"], cmd["steps"]
        first = None
        t0 = time.perf_counter()
        for k in range(steps):
            i = ((start + k) * b) % n
            x, t, y = images[i : i + b], tokens[i : i + b], labels[i : i + b]
            loss = F.cross_entropy(net(x, t), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if first is None:
                first = loss.item()
        secs = time.perf_counter() - t0
        print(json.dumps({"seconds": secs, "first_loss": first}), flush=True)


if __name__ == "__main__":
    main()
