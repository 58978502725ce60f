//! The networks: a question-conditioned convolutional trunk (FiLM) with
//! attention and mean pooling, shared by the VQA student, the GQA teacher
//! (one image) and the NLVR2 teacher (two images).

use serde::{Deserialize, Serialize};
use tch::nn::{self, RNN};
use tch::{Kind, Tensor};

/// Sizes of a FiLM network; stored with its checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FilmConfig {
    /// Input side in pixels.
    pub image_size: i64,
    /// Words in the tokenizer.
    pub vocab: i64,
    /// Word embedding width.
    pub word_dim: i64,
    /// Question encoding width (GRU).
    pub hidden: i64,
    /// Channels of the three convolutions.
    pub channels: [i64; 3],
    /// Output classes.
    pub classes: i64,
    /// Two images (NLVR2) instead of one.
    pub pair: bool,
    /// Attention glimpses, each with its own projection of the question
    /// (several let the head compare two objects).
    #[serde(default = "one")]
    pub glimpses: i64,
}

fn one() -> i64 {
    1
}

/// Question-conditioned image trunk.
#[derive(Debug)]
pub struct Film {
    cfg: FilmConfig,
    embed: nn::Embedding,
    gru: nn::GRU,
    c1: nn::Conv2D,
    c2: nn::Conv2D,
    c3: nn::Conv2D,
    film2: nn::Linear,
    film3: nn::Linear,
    att_q: Vec<nn::Linear>,
    att: Vec<nn::Conv2D>,
    head1: nn::Linear,
    head2: nn::Linear,
}

/// A 3x3 convolution with padding 1.
pub(super) fn conv(p: nn::Path, i: i64, o: i64, stride: i64) -> nn::Conv2D {
    nn::conv2d(
        p,
        i,
        o,
        3,
        nn::ConvConfig {
            stride,
            padding: 1,
            ..Default::default()
        },
    )
}

impl Film {
    /// Builds the variables under `p`.
    pub fn new(p: &nn::Path, cfg: &FilmConfig) -> Film {
        let [a, b, c] = cfg.channels;
        let g = cfg.glimpses.max(1);
        let pooled = (g + 1) * c;
        let joint = if cfg.pair { 2 * pooled } else { pooled } + cfg.hidden;
        Film {
            cfg: cfg.clone(),
            embed: nn::embedding(p / "embed", cfg.vocab, cfg.word_dim, Default::default()),
            gru: nn::gru(p / "gru", cfg.word_dim, cfg.hidden, Default::default()),
            c1: conv(p / "c1", 3, a, 2),
            c2: conv(p / "c2", a, b, 2),
            c3: conv(p / "c3", b + 2, c, 1),
            film2: nn::linear(p / "film2", cfg.hidden, 2 * b, Default::default()),
            film3: nn::linear(p / "film3", cfg.hidden, 2 * c, Default::default()),
            att_q: (0..g)
                .map(|k| nn::linear(p / format!("att_q{k}"), cfg.hidden, c, Default::default()))
                .collect(),
            att: (0..g)
                .map(|k| nn::conv2d(p / format!("att{k}"), c, 1, 1, Default::default()))
                .collect(),
            head1: nn::linear(p / "head1", joint, 128, Default::default()),
            head2: nn::linear(p / "head2", 128, cfg.classes, Default::default()),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &FilmConfig {
        &self.cfg
    }

    /// tokens: `[B, L]` -> question encoding `[B, hidden]`.
    fn encode_text(&self, tokens: &Tensor) -> Tensor {
        let e = tokens.apply(&self.embed);
        let (_, state) = self.gru.seq(&e);
        state.value().squeeze_dim(0)
    }

    /// FiLM: `x * (1 + gamma) + beta`, then ReLU; `gb` is `[B, 2C]`.
    pub(super) fn film(x: &Tensor, gb: &Tensor) -> Tensor {
        let c = x.size()[1];
        let g = gb.narrow(1, 0, c).unsqueeze(-1).unsqueeze(-1);
        let b = gb.narrow(1, c, c).unsqueeze(-1).unsqueeze(-1);
        (x * (g + 1.0) + b).relu()
    }

    /// `x` with two coordinate channels (y, then x, from -1 to 1) appended.
    pub(super) fn with_coords(x: &Tensor) -> Tensor {
        let (bsz, _, h, w) = x.size4().expect("4-d features");
        let opts = (Kind::Float, x.device());
        let ys = Tensor::linspace(-1.0, 1.0, h, opts)
            .view([1, 1, h, 1])
            .expand([bsz, 1, h, w], false);
        let xs = Tensor::linspace(-1.0, 1.0, w, opts)
            .view([1, 1, 1, w])
            .expand([bsz, 1, h, w], false);
        Tensor::cat(&[x, &ys, &xs], 1)
    }

    /// images: `[B, 3, S, S]`, q: `[B, hidden]` -> pooled `[B, (glimpses + 1) c]`.
    fn encode_image(&self, images: &Tensor, q: &Tensor) -> Tensor {
        let x = images.apply(&self.c1).relu();
        let x = Film::film(&x.apply(&self.c2), &q.apply(&self.film2));
        let x = Film::with_coords(&x);
        let x = Film::film(&x.apply(&self.c3), &q.apply(&self.film3));
        let bsz = x.size()[0];
        let flat = x.view([bsz, x.size()[1], -1]);
        let mut parts = Vec::with_capacity(self.att.len() + 1);
        for (proj, att) in self.att_q.iter().zip(&self.att) {
            let keyed = &x * q.apply(proj).unsqueeze(-1).unsqueeze(-1);
            let weights = keyed
                .apply(att)
                .view([bsz, -1])
                .softmax(-1, Kind::Float)
                .unsqueeze(1);
            parts.push((&flat * &weights).sum_dim_intlist(-1, false, Kind::Float));
        }
        parts.push(flat.mean_dim(-1, false, Kind::Float));
        Tensor::cat(&parts, 1)
    }

    /// Logits `[B, classes]`. `images`: `[B, 3, S, S]`, or for a pair model
    /// `[B, 2, 3, S, S]` (left, right); `tokens`: `[B, L]`.
    pub fn logits(&self, images: &Tensor, tokens: &Tensor) -> Tensor {
        let q = self.encode_text(tokens);
        let pooled = if self.cfg.pair {
            let l = self.encode_image(&images.select(1, 0), &q);
            let r = self.encode_image(&images.select(1, 1), &q);
            Tensor::cat(&[l, r], 1)
        } else {
            self.encode_image(images, &q)
        };
        Tensor::cat(&[pooled, q], 1)
            .apply(&self.head1)
            .relu()
            .apply(&self.head2)
    }
}
