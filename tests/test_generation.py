"""The diffusers generation backend: explicit latents in, identical pixels out."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lib_alignment.generation import DiffusersBackend, GenerationSettings, noise_from_seed

SETTINGS = GenerationSettings(prompt="a red circle on a blue background", steps=4, cfg_scale=5.0, width=128, height=128)


@pytest.fixture(scope="module")
def backend(tiny_random_pipe):
    return DiffusersBackend(tiny_random_pipe, model_name="tiny-random")


def pixels(result):
    return np.stack([np.asarray(image) for image in result.images])


def test_same_latents_and_settings_give_the_same_pixels(backend):
    noise = noise_from_seed(7, (3, *backend.latent_shape(128, 128)))
    first, second = backend.generate(SETTINGS, noise), backend.generate(SETTINGS, noise.clone())
    assert np.array_equal(pixels(first), pixels(second))
    assert torch.equal(first.latents, second.latents)
    assert first.latents.shape == (3, 4, 16, 16)


def test_each_image_follows_its_own_latent(backend):
    noise = noise_from_seed(7, (3, *backend.latent_shape(128, 128)))
    changed = noise.clone()
    changed[1] = noise_from_seed(8, changed[1].shape)
    a, b = pixels(backend.generate(SETTINGS, noise)), pixels(backend.generate(SETTINGS, changed))
    assert np.abs(a[0].astype(int) - b[0].astype(int)).max() <= 2  # batch neighbours barely matter
    assert np.abs(a[1].astype(int) - b[1].astype(int)).mean() > 5


def test_ancestral_step_noise_is_fixed_per_candidate_not_per_batch_position(backend):
    """Euler a: a candidate regenerated alone (as the final image is) matches its image in the round's batch."""
    settings = SETTINGS.with_(sampler="Euler a", noise_seed=11)
    noise = noise_from_seed(5, (3, *backend.latent_shape(128, 128)))
    batch = pixels(backend.generate(settings, noise))
    alone = pixels(backend.generate(settings, noise[2:3]))
    assert np.abs(batch[2].astype(int) - alone[0].astype(int)).max() <= 2  # batched maths may differ in the last bit
    same_start = pixels(backend.generate(settings, noise[:1].repeat(2, 1, 1, 1)))
    assert np.array_equal(same_start[0], same_start[1]), "two candidates with the same latent got different step noise"
    reseeded = pixels(backend.generate(settings.with_(noise_seed=12), noise[2:3]))
    assert np.abs(reseeded[0].astype(int) - alone[0].astype(int)).mean() > 1, "noise_seed should drive the step noise"


def test_settings_change_the_image(backend):
    noise = noise_from_seed(1, (1, *backend.latent_shape(128, 128)))
    base = pixels(backend.generate(SETTINGS, noise))
    for change in ({"cfg_scale": 1.0}, {"steps": 6}, {"sampler": "Euler"}, {"prompt": "a green square"}):
        other = pixels(backend.generate(SETTINGS.with_(**change), noise))
        assert not np.array_equal(base, other), change


def test_progress_is_reported_per_step(backend):
    seen = []
    noise = noise_from_seed(1, (1, *backend.latent_shape(128, 128)))
    backend.generate(SETTINGS, noise, progress=lambda step, total: seen.append((step, total)))
    assert seen == [(i, 4) for i in range(1, 5)]


@pytest.mark.parametrize(
    "change, message",
    [({"steps": 0}, "steps"), ({"width": 100}, "multiples of 8"), ({"sampler": "Nope"}, "sampler"), ({"cfg_scale": -1}, "cfg_scale")],
)
def test_bad_settings_are_named(backend, change, message):
    noise = noise_from_seed(1, (1, *backend.latent_shape(128, 128)))
    with pytest.raises(ValueError, match=message):
        backend.generate(SETTINGS.with_(**change), noise)


def test_wrong_latent_shape_and_prompt_count_are_refused(backend):
    with pytest.raises(ValueError, match="expected"):
        backend.generate(SETTINGS, torch.zeros(2, 4, 8, 8))
    with pytest.raises(ValueError, match="prompts"):
        backend.generate(SETTINGS, torch.zeros(2, 4, 16, 16), prompts=["one"])


def test_noise_from_seed_is_unit_variance_and_seeded():
    a, b = noise_from_seed(42, (4, 64, 64)), noise_from_seed(42, (4, 64, 64))
    assert torch.equal(a, b)
    assert abs(a.std().item() - 1.0) < 0.02
    assert not torch.equal(a, noise_from_seed(43, (4, 64, 64)))
