"""Description infusion: exact strings, written by hand."""

import pytest

from stic_plugin.assets import default_infusion_format_file
from stic_plugin.method.infusion import infuse_messages, infuse_turn, read_infusion_format

FORMAT = read_infusion_format(default_infusion_format_file())


def test_default_format_is_the_authors():
    assert FORMAT == "{images}\nImage description:\n{description}\n\n{instruction}"


def test_placeholder_first_gets_the_description_right_after_it():
    assert infuse_turn("<image>\nWhat color is the bus?", ["A red bus."], FORMAT) == (
        "<image>\nImage description:\nA red bus.\n\nWhat color is the bus?"
    )
    assert infuse_turn("<image>What?", ["D."], FORMAT) == "<image>\nImage description:\nD.\n\nWhat?"


def test_the_image_comes_first_whatever_the_inputs_placement():
    """mix665k's first record has its placeholder after the question; LLaVA trains with it first."""
    question = "What are the colors of the bus in the image?\n<image>"
    expected = "<image>\nImage description:\nA red bus.\n\nWhat are the colors of the bus in the image?"
    assert infuse_turn(question, ["A red bus."], FORMAT) == expected
    assert infuse_turn("What is <image> showing?", ["D."], FORMAT) == (
        "<image>\nImage description:\nD.\n\nWhat is  showing?"  # LLaVA: the placeholder removed, the text stripped
    )
    assert infuse_turn("Is <image> like <image>?", ["x", "y"], FORMAT) == (
        "<image><image>\nImage description:\nImage 1: x\n\nImage 2: y\n\nIs  like ?"  # order kept, placeholders first
    )


def test_keep_puts_the_description_in_front_and_the_placeholder_where_it_was():
    assert (
        infuse_turn("Describe briefly.\n<image>", ["D."], FORMAT, placement="keep")
        == "Image description:\nD.\n\nDescribe briefly.\n<image>"
    )
    assert infuse_turn("Is <image> like <image>?", ["x", "y"], FORMAT, placement="keep") == (
        "Image description:\nImage 1: x\n\nImage 2: y\n\nIs <image> like <image>?"
    )


def test_several_images_are_labelled_in_order():
    assert infuse_turn("<image><image>\nCompare them.", ["First.", "Second."], FORMAT) == (
        "<image><image>\nImage description:\nImage 1: First.\n\nImage 2: Second.\n\nCompare them."
    )
    assert infuse_turn("<image>\n<image>\nCompare.", ["First.", "Second."], FORMAT) == (
        "<image><image>\nImage description:\nImage 1: First.\n\nImage 2: Second.\n\nCompare."
    )


def test_only_the_first_user_turn_changes():
    messages = [
        {"role": "user", "content": "<image>\nQ1"},
        {"role": "assistant", "content": "A1 <image> literal"},
        {"role": "user", "content": "<image>\nQ2"},
        {"role": "assistant", "content": "A2"},
    ]
    out = infuse_messages(messages, ["D"], FORMAT, "<image>")
    assert out[0]["content"] == "<image>\nImage description:\nD\n\nQ1"
    assert out[1:] == messages[1:]
    assert messages[0]["content"] == "<image>\nQ1"  # the input is not modified
    assert infuse_messages(messages, [], FORMAT, "<image>") == messages  # text-only: unchanged
    no_placeholder = [{"role": "user", "content": "What color?"}, {"role": "assistant", "content": "Red."}]
    assert infuse_messages(no_placeholder, ["D"], FORMAT, "<image>")[0]["content"] == (
        "<image>\nImage description:\nD\n\nWhat color?"  # an image without a placeholder gets one, first
    )
    later = [
        {"role": "user", "content": "Q1"},
        {"role": "assistant", "content": "A1"},
        {"role": "user", "content": "Q2 <image>"},
        {"role": "assistant", "content": "A2"},
    ]
    # front: the later turn's placeholder goes first in that turn, as LLaVA's preprocessing does; keep: as written
    assert infuse_messages(later, ["D"], FORMAT, "<image>")[2]["content"] == "<image>\nQ2"
    assert infuse_messages(later, ["D"], FORMAT, "<image>", "keep")[2]["content"] == "Q2 <image>"


def test_custom_format_and_bad_formats(tmp_path):
    custom = tmp_path / "format.txt"
    custom.write_text("{images}Context: {description} | {instruction}\n")
    fmt = read_infusion_format(str(custom))
    assert infuse_turn("<image>\nQ", ["D"], fmt) == "<image>Context: D | Q"
    custom.write_text("{images} {description}")
    with pytest.raises(ValueError, match="must contain {instruction}"):
        read_infusion_format(str(custom))
    custom.write_text("Desc: {description}\n{instruction}")
    with pytest.raises(ValueError, match="must contain {images}"):
        read_infusion_format(str(custom))
    custom.write_text("{images}{description} {instruction} {caption}")
    with pytest.raises(ValueError, match="unknown field or a stray brace"):
        read_infusion_format(str(custom))
