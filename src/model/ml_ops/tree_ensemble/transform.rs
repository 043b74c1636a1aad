//! onnxruntime's post-processing of tree-ensemble scores: the post
//! transforms, computed in f32 with onnxruntime's own formulas (its PROBIT
//! uses an approximate inverse error function, kept here so outputs match),
//! and `write_scores`, which expands a single scored column of a two-class
//! model into two.

use super::eval::Score;
use super::flat::Real;
use super::parse::PostTransform;

/// onnxruntime's `write_scores`: post-transform in f32; a single scored column
/// is expanded into two according to `add_second_class`.
pub fn write_scores<T: Real>(preds: &[Score<T>], post: PostTransform, out: &mut [f32], add_second_class: i32) {
    if preds.len() >= 2 {
        for (o, p) in out.iter_mut().zip(preds) {
            *o = p.f32();
        }
        match post {
            PostTransform::None => (),
            PostTransform::Probit => out.iter_mut().for_each(|o| *o = probit(*o)),
            PostTransform::Logistic => out.iter_mut().for_each(|o| *o = logistic(*o)),
            PostTransform::Softmax => softmax(out),
            PostTransform::SoftmaxZero => softmax_zero(out),
        }
        return;
    }
    let Some(p) = preds.first() else { return };
    // Arithmetic in T, transforms in f32, as onnxruntime does.
    let v = p.value();
    let (a, b) = match add_second_class {
        // onnxruntime leaves the second column unwritten (it reads as NaN).
        _ if post == PostTransform::Probit => (probit(v.to_f32()), f32::NAN),
        0 | 1 => ((T::from_f64(1.0) + -v).to_f32(), v.to_f32()),
        2 | 3 if post == PostTransform::Logistic => (logistic((-v).to_f32()), logistic(v.to_f32())),
        2 | 3 => ((-v).to_f32(), v.to_f32()),
        _ => (v.to_f32(), f32::NAN),
    };
    out[0] = a;
    if let Some(o) = out.get_mut(1) {
        *o = b;
    }
}

pub fn logistic(v: f32) -> f32 {
    let e = 1.0 / (1.0 + (-v.abs()).exp());
    if v < 0.0 {
        1.0 - e
    } else {
        e
    }
}

/// onnxruntime's approximate inverse error function, kept as is so PROBIT
/// outputs match it rather than the exact function.
#[allow(clippy::approx_constant)] // onnxruntime's own 3.14159, on purpose
fn erf_inv(x: f32) -> f32 {
    let sgn = if x < 0.0 { -1.0f32 } else { 1.0 };
    let x = (1.0 - x) * (1.0 + x);
    let log = x.ln();
    let v = 2.0 / (3.14159f32 * 0.147) + 0.5 * log;
    let v2 = 1.0 / 0.147f32 * log;
    let v3 = -v + (v * v - v2).sqrt();
    sgn * v3.sqrt()
}

pub fn probit(v: f32) -> f32 {
    // onnxruntime's 1.41421356f rounds to this same f32.
    std::f32::consts::SQRT_2 * erf_inv(2.0 * v - 1.0)
}

pub fn softmax(values: &mut [f32]) {
    let mut max = -f32::MAX;
    for &v in values.iter() {
        if v > max {
            max = v;
        }
    }
    let mut sum = 0.0f32;
    for v in values.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    values.iter_mut().for_each(|v| *v /= sum);
}

/// Softmax that leaves (near-)zero scores out of the normalisation.
pub fn softmax_zero(values: &mut [f32]) {
    let mut max = -f32::MAX;
    for &v in values.iter() {
        if v > max {
            max = v;
        }
    }
    let exp_neg_max = (-max).exp();
    let mut sum = 0.0f32;
    for v in values.iter_mut() {
        if *v > 0.0000001 || *v < -0.0000001 {
            *v = (*v - max).exp();
            sum += *v;
        } else {
            *v *= exp_neg_max;
        }
    }
    values.iter_mut().for_each(|v| *v /= sum);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transforms() {
        assert_eq!(logistic(0.0), 0.5);
        assert!((logistic(2.0) + logistic(-2.0) - 1.0).abs() < 1e-7);
        assert!(probit(0.5).abs() < 1e-6);
        assert!((probit(0.975) - 1.96).abs() < 0.01);
        let mut v = [0.0f32, 1.0, 0.0];
        softmax_zero(&mut v);
        assert_eq!(v[1], 1.0);
        assert!(v[0] == 0.0 && v[2] == 0.0);
    }
}
