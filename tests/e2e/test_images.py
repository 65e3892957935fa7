"""Images in a real browser: picked and pasted into the composer, one removed, one refused,
sent to a vision model and shown in the message as thumbnails that open full size."""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from PIL import Image
from playwright.sync_api import expect

from conversations.models import Attachment, Message
from tests.mock_upstream import MockUpstream

pytestmark = pytest.mark.django_db(transaction=True)

VISION = "llava:7b"

PASTE = """([data, name]) => {
  const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
  const clipboard = new DataTransfer();
  clipboard.items.add(new File([bytes], name, { type: "image/png" }));
  const box = document.getElementById("composer-input");
  box.focus();
  const paste = { clipboardData: clipboard, bubbles: true, cancelable: true };
  box.dispatchEvent(new ClipboardEvent("paste", paste));
}"""


def png(color: tuple[int, int, int], kind: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), color).save(buffer, format=kind)
    return buffer.getvalue()


@pytest.fixture
def vision(upstream: MockUpstream) -> Iterator[str]:
    upstream.ollama_models.append(VISION)
    yield VISION
    upstream.ollama_models.remove(VISION)


def test_an_image_picked_and_one_pasted_are_sent_and_shown(
    signed_in: Callable[..., Any], vision: str, upstream: MockUpstream
) -> None:
    page = signed_in()
    page.select_option("#model-picker", vision)
    tray = page.locator("#pending-images .pending-image")

    page.set_input_files(
        "#image-input",
        files=[
            {"name": "red.png", "mimeType": "image/png", "buffer": png((255, 0, 0))},
            {"name": "green.jpg", "mimeType": "image/jpeg", "buffer": png((0, 255, 0), "JPEG")},
        ],
    )
    expect(tray).to_have_count(2)
    page.evaluate(PASTE, [base64.b64encode(png((0, 0, 255))).decode(), "image.png"])
    expect(tray).to_have_count(3)

    # A file that is not an image is refused with a message, and not added.
    page.set_input_files(
        "#image-input", files=[{"name": "notes.png", "mimeType": "image/png", "buffer": b"hello"}]
    )
    expect(page.locator("#composer-error")).to_contain_text("PNG, JPEG, WebP or GIF")
    expect(tray).to_have_count(3)

    # Remove the green one before sending.
    tray.nth(1).get_by_role("button", name="Remove this image").click()
    expect(tray).to_have_count(2)

    box = page.get_by_label("Message", exact=True)
    box.fill("What colours are these?")
    box.press("Enter")

    reply = page.locator(".msg-assistant").last
    expect(reply).to_have_class(re.compile("status-complete"))
    expect(tray).to_have_count(0)
    thumbnails = page.locator(".msg-user .msg-images img")
    expect(thumbnails).to_have_count(2)
    # Each thumbnail loaded through the access-checked view.
    page.wait_for_function(
        "() => [...document.querySelectorAll('.msg-user .msg-images img')]"
        ".every((img) => img.complete && img.naturalWidth === 40)"
    )

    message = Message.objects.get(role="user")
    sent = list(Attachment.objects.filter(message=message).values_list("content_type", flat=True))
    assert sorted(sent) == ["image/png", "image/png"]
    assert Attachment.objects.count() == 2  # the removed one is gone
    (body,) = [
        r.body
        for r in upstream.requests
        if r.path == "/api/chat" and r.body["messages"][-1]["content"] == "What colours are these?"
    ]
    assert len(body["messages"][-1]["images"]) == 2

    # A thumbnail opens the image full size.
    with page.context.expect_page() as opened:
        page.locator(".msg-user .msg-images a").first.click()
    full = opened.value
    full.wait_for_load_state()
    assert re.search(r"/images/[0-9a-f-]{36}$", full.url)
    assert full.evaluate("() => document.images.length && document.images[0].naturalWidth") == 40


def test_a_model_without_vision_is_refused_and_the_images_stay(
    signed_in: Callable[..., Any], upstream: MockUpstream
) -> None:
    page = signed_in()
    page.set_input_files(
        "#image-input",
        files=[{"name": "red.png", "mimeType": "image/png", "buffer": png((255, 0, 0))}],
    )
    tray = page.locator("#pending-images .pending-image")
    expect(tray).to_have_count(1)
    box = page.get_by_label("Message", exact=True)
    box.fill("Can you see this?")
    box.press("Enter")
    expect(page.locator("#composer-error")).to_contain_text("cannot see images")
    expect(tray).to_have_count(1)
    expect(page.get_by_label("Message", exact=True)).to_have_value("Can you see this?")
    assert not Message.objects.exists()
