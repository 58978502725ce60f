//! The domain-gap probe: a tiny colour classifier trained on `generic`
//! object images is measurably worse on `gqa` and `nlvr2` images than on
//! held-out `generic` ones. If this fails, the domains are too alike for
//! distillation to have anything to fix.

use tch::nn::{self, Module, OptimizerConfig};
use tch::{Device, Kind, Tensor};
use visprog_distiller::data::images::to_model_input;
use visprog_distiller::data::render::{self, DomainStyle};
use visprog_distiller::data::rng::Rng;
use visprog_distiller::data::world::{Scene, COLORS, SHAPES, SIZES};

const SIDE: u32 = 24;

/// Crops of single objects in a domain, as CROP would hand them to VQA.
fn crops(style: &DomainStyle, n: usize, seed: u64) -> (Tensor, Tensor) {
    let mut rng = Rng::new(seed, style.name);
    let mut xs = Vec::with_capacity(n * (3 * SIDE * SIDE) as usize);
    let mut ys = Vec::with_capacity(n);
    for i in 0..n {
        let c = i % COLORS.len();
        let mut s = Scene::default();
        let shape = *rng.pick(&SHAPES);
        let size = *rng.pick(&SIZES);
        // One object filling about two thirds of the crop, as CROP's 1.5x box does.
        s.objects.push(visprog_distiller::data::world::Obj {
            shape,
            color: COLORS[c],
            size,
            cx: rng.range(0.45, 0.55),
            cy: rng.range(0.45, 0.55),
            extent: rng.range(0.55, 0.7),
        });
        let img = render::render(&s, style, SIDE, &mut rng);
        xs.extend(to_model_input(&img, SIDE));
        ys.push(c as i64);
    }
    (
        Tensor::from_slice(&xs).view([n as i64, (3 * SIDE * SIDE) as i64]),
        Tensor::from_slice(&ys),
    )
}

fn accuracy(net: &impl Module, x: &Tensor, y: &Tensor) -> f64 {
    tch::no_grad(|| {
        net.forward(x)
            .argmax(-1, false)
            .eq_tensor(y)
            .to_kind(Kind::Float)
            .mean(Kind::Float)
            .double_value(&[])
    })
}

#[test]
fn a_classifier_trained_on_generic_is_worse_on_the_task_domains() {
    tch::manual_seed(0);
    let (xtr, ytr) = crops(&render::GENERIC, 1600, 1);
    let (xg, yg) = crops(&render::GENERIC, 400, 2);
    let (xq, yq) = crops(&render::GQA, 400, 3);
    let (xn, yn) = crops(&render::NLVR2, 400, 4);
    let vs = nn::VarStore::new(Device::Cpu);
    let p = vs.root();
    let net = nn::seq()
        .add(nn::linear(
            &p / "l1",
            (3 * SIDE * SIDE) as i64,
            64,
            Default::default(),
        ))
        .add_fn(|x| x.relu())
        .add(nn::linear(
            &p / "l2",
            64,
            COLORS.len() as i64,
            Default::default(),
        ));
    let mut opt = nn::Adam::default().build(&vs, 1e-3).unwrap();
    for epoch in 0..30 {
        for b in 0..16 {
            let idx = Tensor::arange_start(b * 100, (b + 1) * 100, (Kind::Int64, Device::Cpu));
            let loss = net
                .forward(&xtr.index_select(0, &idx))
                .cross_entropy_for_logits(&ytr.index_select(0, &idx));
            opt.backward_step(&loss);
        }
        let _ = epoch;
    }
    let (g, q, n) = (
        accuracy(&net, &xg, &yg),
        accuracy(&net, &xq, &yq),
        accuracy(&net, &xn, &yn),
    );
    eprintln!(
        "colour accuracy: generic {g:.3}, gqa {q:.3}, nlvr2 {n:.3} (n=400 each, chance 0.125)"
    );
    assert!(g >= 0.9, "learns generic colours: {g}");
    assert!(g - q >= 0.15, "gqa gap: generic {g}, gqa {q}");
    assert!(g - n >= 0.15, "nlvr2 gap: generic {g}, nlvr2 {n}");
}
