"""Transformations of ssmkit.eval.robustness: seeded, batched, label-preserving, each doing
what it says (SNR, gain, shift, speed, clipping, mu-law, masking), padding left alone."""

import math

import pytest
import torch

from ssmkit.data.audio import mu_law_decode, mu_law_encode
from ssmkit.eval import robustness as rb


def batch(rows=4, length=400, channels=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    shape = (rows, length) if channels is None else (rows, length, channels)
    return 0.3 * torch.randn(shape, generator=g)


def snr_db(clean, noisy):
    clean, noise = clean.double(), noisy.double() - clean.double()
    return 10 * torch.log10(clean.flatten(1).square().sum(1) / noise.flatten(1).square().sum(1))


RANDOM = {
    "noise": lambda seed: rb.white_noise(10, seed=seed),
    "mask": lambda seed: rb.segment_mask(0.2, segments=2, seed=seed),
}


@pytest.mark.parametrize("kind", RANDOM)
def test_same_seed_same_output_and_rows_independent_of_batching(kind):
    x = batch(6)
    out = RANDOM[kind](7)(x)
    assert torch.equal(out, RANDOM[kind](7)(x))
    assert not torch.equal(out, RANDOM[kind](8)(x))
    # An example's draw depends on its index, not on which batch it is in.
    part = RANDOM[kind](7)(x[[4, 1]], index=[4, 1])
    assert torch.equal(part, out[[4, 1]])
    assert not torch.equal(RANDOM[kind](7)(x[[4, 1]]), part)  # default index: rows 0, 1


@pytest.mark.parametrize("snr", [30, 20, 10, 0, -5])
@pytest.mark.parametrize("channels", [None, 2])
def test_noise_has_the_requested_snr(snr, channels):
    x = batch(8, 257, channels)
    x[3] *= 0.01  # quiet and loud examples alike: SNR is relative to each example
    measured = snr_db(x, rb.white_noise(snr, seed=1)(x))
    assert (measured - snr).abs().max() <= 0.5, measured
    # The noise is rescaled to its exact target power: only float32 rounding of x + noise remains.
    assert (measured - snr).abs().max() <= 1e-3, measured


def test_noise_respects_padding_and_silence():
    x = batch(3, 100)
    lengths = torch.tensor([100, 60, 0])
    x[1, 60:] = 0
    x[2] = 0
    out, out_lengths = rb.white_noise(0, seed=3).apply(x, lengths)
    assert torch.equal(out_lengths, lengths)
    assert torch.equal(out[1, 60:], torch.zeros(40)) and torch.equal(out[2], torch.zeros(100))
    assert abs(snr_db(x[1:2, :60], out[1:2, :60]).item()) <= 1e-3
    silent = torch.zeros(2, 50)
    assert torch.equal(rb.white_noise(10)(silent), silent)  # no signal, no noise (SNR undefined)


def test_noise_is_white_gaussian():
    x = torch.ones(1, 200_000)
    noise = (rb.white_noise(0, seed=0)(x) - x).double().flatten()
    assert abs(noise.mean()) < 5 / math.sqrt(len(noise))  # 5 standard errors
    lag1 = (noise[1:] * noise[:-1]).mean() / noise.square().mean()
    assert abs(lag1) < 5 / math.sqrt(len(noise))
    kurtosis = (noise**4).mean() / noise.square().mean() ** 2  # 3 for a Gaussian
    assert abs(kurtosis - 3) < 0.1


def test_gain():
    x = batch()
    assert torch.equal(rb.gain(0)(x), x)
    assert torch.allclose(rb.gain(-20)(x), x * 0.1, rtol=1e-6, atol=0)
    assert torch.allclose(rb.gain(6)(x), x * 10 ** (6 / 20), rtol=1e-6, atol=0)


def test_time_shift():
    x = batch(2, 10)
    out = rb.time_shift(3)(x)
    assert torch.equal(out[:, 3:], x[:, :7]) and torch.equal(out[:, :3], torch.zeros(2, 3))
    out = rb.time_shift(-3)(x)
    assert torch.equal(out[:, :7], x[:, 3:]) and torch.equal(out[:, 7:], torch.zeros(2, 3))
    assert torch.equal(rb.time_shift(0)(x), x)
    # A fraction of each row's valid length; nothing moves into the padding.
    lengths = torch.tensor([10, 5])
    padded = x.clone()
    padded[1, 5:] = 0
    out = rb.time_shift(0.2)(padded, lengths)
    assert torch.equal(out[0, 2:], padded[0, :8])
    assert torch.equal(out[1, 1:5], padded[1, :4]) and torch.equal(out[1, 5:], torch.zeros(5))


def dominant_frequency(x):
    """Index of the strongest rfft bin of each row (in cycles per row length)."""
    return torch.fft.rfft(x.double(), dim=1).abs().argmax(1)


def test_speed_resamples_and_updates_lengths():
    t = torch.arange(800, dtype=torch.float32)
    x = torch.sin(2 * math.pi * 20 * t / 800).repeat(2, 1)  # 20 cycles over the row
    out, lengths = rb.speed(2.0).apply(x)
    assert lengths.tolist() == [400, 400] and torch.equal(out[:, 400:], torch.zeros(2, 400))
    assert dominant_frequency(out[:, :400]).tolist() == [20, 20]  # same cycles, half the samples
    # Away from the edges, the resampled tone is the tone at twice the speed.
    assert (out[:, 50:350] - torch.sin(2 * math.pi * 40 * t[50:350] / 800)).abs().max() < 1e-2
    slower, lengths = rb.speed(0.8).apply(x, torch.tensor([800, 400]))
    assert lengths.tolist() == [800, 500]  # cut at the batch length; the short row grows
    assert torch.equal(rb.speed(1.0)(x), x)
    assert rb.speed(1 / 3).name == "speed x0.333333"


def test_clipping():
    x = batch(3, 50)
    out = rb.clipping(0.25)(x)
    peak = x.abs().amax(1, keepdim=True)
    assert torch.allclose(out.abs().amax(1, keepdim=True), 0.25 * peak)
    inside = x.abs() <= 0.25 * peak
    assert torch.equal(out[inside], x[inside])
    assert torch.equal(rb.clipping(1.0)(x), x)


def test_mu_law_requantizes():
    # Dense near 0, where the levels are closest (about 1.7e-4 apart).
    x = torch.cat([torch.linspace(-1, 1, 4001), torch.linspace(-0.01, 0.01, 4001)]).reshape(1, -1)
    out = rb.mu_law(8)(x)
    assert torch.equal(out, mu_law_decode(mu_law_encode(x, 8), 8))
    assert len(torch.unique(out)) == 256
    assert torch.equal(rb.mu_law(8)(out), out)  # requantizing a quantized signal changes nothing
    # Companding: the step between levels grows with the amplitude.
    levels = torch.unique(out)
    steps = levels[1:] - levels[:-1]
    assert steps[len(steps) // 2] < steps[0] / 100


def test_segment_mask_zeroes_contiguous_stretches():
    x = batch(5, 200) + 10  # no zeros of its own
    out = rb.segment_mask(0.1, seed=4)(x)
    for row in range(5):
        zero = (out[row] == 0).nonzero().flatten()
        assert len(zero) == 20 and zero[-1] - zero[0] == 19
        assert torch.equal(out[row][out[row] != 0], x[row][out[row] != 0])
    lengths = torch.tensor([200, 50, 0, 200, 200])
    out = rb.segment_mask(0.5, segments=2, seed=4)(x, lengths)
    assert (out[1, :50] == 0).sum() <= 26 and torch.equal(out[1, 50:], x[1, 50:])


def test_compose_applies_in_order_with_each_seed():
    x = batch(3, 120)
    parts = [rb.gain(-6), rb.white_noise(20, seed=5), rb.time_shift(7)]
    out = rb.compose(*parts)(x)
    expected = x
    for part in parts:
        expected = part(expected)
    assert torch.equal(out, expected)
    assert rb.compose(*parts).name == "gain -6 dB + noise 20 dB SNR + shift +7 samples"
    assert torch.equal(rb.compose(rb.identity(), rb.gain(0))(x), x)


def test_channels_and_user_defined():
    x = batch(2, 30, channels=3)
    assert rb.time_shift(2)(x).shape == x.shape
    flip = rb.Transformation("flip sign", lambda x, lengths, rng: (-x, lengths))
    assert torch.equal(flip(x), -x)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: rb.white_noise(10)(torch.zeros(5)), "x: expected a floating-point tensor of shape (batch, length"),
        (lambda: rb.gain(1)(torch.zeros(2, 5, dtype=torch.long)), "x: expected a floating-point tensor"),
        (lambda: rb.gain(1)(torch.zeros(2, 5), lengths=[5, 6]), "lengths: expected 2 valid lengths in [0, 5]"),
        (lambda: rb.gain(1)(torch.zeros(2, 5), index=[1]), "index: expected one example index per row (2)"),
        (lambda: rb.time_shift(1.5), "shift: a float shift is a fraction of the length in (-1, 1)"),
        (lambda: rb.speed(0), "factor: expected a positive speed factor"),
        (lambda: rb.clipping(0), "ratio: expected a fraction of the peak in (0, 1]"),
        (lambda: rb.mu_law(0), "bits: expected a whole number from 1 to 16"),
        (lambda: rb.segment_mask(2), "fraction: expected a fraction of the length in [0, 1]"),
        (lambda: rb.segment_mask(0.1, segments=0), "segments: expected a positive whole number"),
        (lambda: rb.Transformation("x", 3), "fn: expected a callable"),
        (lambda: rb.compose(rb.gain(1), "noise"), "transformations[1]: expected a Transformation, got str"),
    ],
)
def test_bad_arguments_raise_clear_errors(make, message):
    with pytest.raises((ValueError, TypeError)) as info:
        make()
    assert message in str(info.value)
