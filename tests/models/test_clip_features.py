import numpy as np
import pytest
import torch

from braindiff_app.models.clip_features import clip_text_features, clip_vision_features, unconditional_features


def _images(n, side=24, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, side, side, 3), dtype=np.uint8)


def test_vision_features_shape_and_class_token_unit_norm(vd):
    features = clip_vision_features(vd.image_encoder, _images(5), batch_size=2)
    assert features.shape == (5, 257, 16) and features.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(features[:, 0], axis=-1), 1.0, rtol=1e-5)
    assert not np.allclose(np.linalg.norm(features[:, 1:], axis=-1), 1.0)  # only the class token is unit norm


def test_vision_features_follow_the_reference_recipe(vd):
    """post_layernorm -> visual_projection on all tokens of the last hidden state, / norm of token 0."""
    from braindiff_app.models.clip_features import clip_pixel_values

    images = _images(2)
    with torch.no_grad():
        pixels = clip_pixel_values(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255, 32)
        out = vd.image_encoder(pixel_values=pixels)
        tokens = vd.image_encoder.visual_projection(vd.image_encoder.vision_model.post_layernorm(
            out.last_hidden_state))
        # token 0 through the same path is the model's own pooled image embedding
        np.testing.assert_allclose(tokens[:, 0], out.image_embeds, atol=1e-5)
        expected = tokens / out.image_embeds.norm(dim=-1)[:, None, None]
    np.testing.assert_allclose(clip_vision_features(vd.image_encoder, images), expected.numpy(), atol=1e-5)


def test_vision_features_do_not_depend_on_batch_size(vd):
    images = _images(4)
    np.testing.assert_allclose(clip_vision_features(vd.image_encoder, images, batch_size=1),
                               clip_vision_features(vd.image_encoder, images, batch_size=4), atol=1e-5)


def test_text_features_shape_normalisation_and_caption_average(vd):
    captions = [["a red ball on the grass", "a smiling face"], ["a sign that says stop"]]
    features = clip_text_features(vd.text_encoder, vd.tokenizer, captions, batch_size=2)
    assert features.shape == (2, 77, 16) and features.dtype == np.float32
    # the end-of-text token's projected output is the pooled one: unit norm after the division
    ids = vd.tokenizer(["a sign that says stop"], padding="max_length", max_length=77).input_ids[0]
    eos = ids.index(vd.tokenizer.eos_token_id)
    assert np.linalg.norm(features[1, eos]) == pytest.approx(1.0, rel=1e-5)
    singles = clip_text_features(vd.text_encoder, vd.tokenizer, [[c] for c in captions[0]])
    np.testing.assert_allclose(features[0], singles.mean(0), atol=1e-6)


def test_unconditional_features_are_grey_image_and_empty_caption(vd):
    vision, text = unconditional_features(vd.image_encoder, vd.text_encoder, vd.tokenizer)
    assert vision.shape == (1, 257, 16) and text.shape == (1, 77, 16)
    grey = np.full((1, 32, 32, 3), 127.5)
    # uint8 cannot hold 127.5: the grey image sits between the 127 and 128 images' features
    low, high = (clip_vision_features(vd.image_encoder, np.floor(grey + d).astype(np.uint8)) for d in (0, 0.5))
    assert np.all(np.minimum(low, high) - 1e-4 <= vision) and np.all(vision <= np.maximum(low, high) + 1e-4)
    np.testing.assert_allclose(text, clip_text_features(vd.text_encoder, vd.tokenizer, [[""]]), atol=1e-6)


def test_bad_inputs_are_named(vd):
    with pytest.raises(ValueError, match="images: expected dtype uint8"):
        clip_vision_features(vd.image_encoder, _images(1).astype(np.float32))
    with pytest.raises(ValueError, match=r"images: expected shape \(n_images, height, width, 3\)"):
        clip_vision_features(vd.image_encoder, _images(1)[..., 0])
    with pytest.raises(ValueError, match=r"captions\[1\]: expected a non-empty list of str"):
        clip_text_features(vd.text_encoder, vd.tokenizer, [["a cat"], []])
    with pytest.raises(TypeError, match="captions: expected a list with one list of caption strings"):
        clip_text_features(vd.text_encoder, vd.tokenizer, ["a cat"])
