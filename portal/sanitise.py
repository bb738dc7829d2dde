"""Mail HTML made inert for the portal's reading pane: bleach with an allow-list.

What survives is formatting only: no script, no event handlers, no forms, no frames, no
SVG or MathML, no ``javascript:`` or ``data:`` links, no CSS functions (``url()``,
``expression()``), and remote images only when the recipient asked for them. The result
is further shown in a sandboxed iframe under a CSP without script (``portal.reading_pane``):
two fences, so a gap in one is not a hole.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from html import unescape
from typing import Any

import tinycss2
from bleach import html5lib_shim
from bleach.css_sanitizer import CSSSanitizer
from bleach.sanitizer import Cleaner

ALLOWED_TAGS = frozenset({
    "a", "abbr", "address", "b", "big", "blockquote", "br", "caption", "center", "cite",
    "code", "col", "colgroup", "dd", "del", "div", "dl", "dt", "em", "font", "h1", "h2",
    "h3", "h4", "h5", "h6", "hr", "i", "img", "ins", "kbd", "li", "ol", "p", "pre", "q",
    "s", "small", "span", "strike", "strong", "sub", "sup", "table", "tbody", "td",
    "tfoot", "th", "thead", "tr", "tt", "u", "ul",
})
# Elements whose text is not mail content: dropped with everything inside them rather
# than left behind as stray text (bleach alone keeps "alert(1)" of a stripped <script>).
DROPPED_WITH_CONTENT = frozenset({
    "script", "style", "title", "head", "svg", "math", "template", "noscript", "iframe",
    "frame", "frameset", "object", "embed", "applet", "textarea", "select", "option",
    "xml", "noembed", "noframes",
})
COMMON_ATTRIBUTES = frozenset({"style", "dir", "align", "title", "lang"})
TAG_ATTRIBUTES: dict[str, frozenset[str]] = {
    "a": frozenset({"href"}),
    "img": frozenset({"src", "alt", "width", "height"}),
    "font": frozenset({"color", "face", "size"}),
    "table": frozenset({"width", "border", "cellpadding", "cellspacing", "bgcolor"}),
    "td": frozenset({"colspan", "rowspan", "valign", "width", "bgcolor"}),
    "th": frozenset({"colspan", "rowspan", "valign", "width", "bgcolor"}),
    "col": frozenset({"span", "width"}),
    "ol": frozenset({"start", "type"}),
}
LINK_PROTOCOLS = frozenset({"http", "https", "mailto"})
CSS_PROPERTIES = frozenset({
    "color", "background-color", "font", "font-family", "font-size", "font-style",
    "font-weight", "text-align", "text-decoration", "text-indent", "text-transform",
    "line-height", "letter-spacing", "white-space", "vertical-align", "width", "max-width",
    "min-width", "height", "margin", "margin-top", "margin-right", "margin-bottom",
    "margin-left", "padding", "padding-top", "padding-right", "padding-bottom",
    "padding-left", "border", "border-top", "border-right", "border-bottom", "border-left",
    "border-color", "border-style", "border-width", "border-collapse", "border-spacing",
    "border-radius", "list-style-type", "display",
})
# CSS functions that only compute a colour; every other function (url, expression,
# image-set, var, …) could fetch something or run something, so its declaration goes.
CSS_COLOUR_FUNCTIONS = frozenset({"rgb", "rgba", "hsl", "hsla"})


@dataclass(frozen=True)
class SanitisedHtml:
    html: str
    blocked_images: int  # remote images left out because the recipient did not ask for them


class _StrictCSS(CSSSanitizer):
    """bleach's CSS sanitiser keeps allowed properties whatever their value; this one
    also drops any declaration whose value calls a function other than a colour's."""

    def sanitize_css(self, style: str) -> str:
        safe = []
        for declaration in tinycss2.parse_declaration_list(style, skip_whitespace=True,
                                                           skip_comments=True):
            if declaration.type != "declaration":
                continue
            if declaration.lower_name not in self.allowed_css_properties:
                continue
            if any(_calls_function(token) for token in declaration.value):
                continue
            value = tinycss2.serialize(declaration.value).strip()
            if "\\" in value:  # escapes can spell "url(" past the tokenizer's eyes
                continue
            important = " !important" if declaration.important else ""
            safe.append(f"{declaration.lower_name}: {value}{important};")
        return " ".join(safe)


def _calls_function(token: Any) -> bool:
    if token.type == "url":
        return True
    if token.type == "function":
        if token.lower_name not in CSS_COLOUR_FUNCTIONS:
            return True
        return any(_calls_function(inner) for inner in token.arguments)
    if token.type in ("() block", "[] block", "{} block"):
        return any(_calls_function(inner) for inner in token.content)
    return False


def _drop_contents(tokens: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """html5lib tokens without the elements of DROPPED_WITH_CONTENT and what they hold."""
    depth = 0
    for token in tokens:
        kind, name = token.get("type"), str(token.get("name", "")).lower()
        if name in DROPPED_WITH_CONTENT:
            if kind == "StartTag":
                depth += 1
                continue
            if kind == "EndTag":
                depth = max(depth - 1, 0)
                continue
            if kind == "EmptyTag":
                continue
        if depth == 0:
            yield token


def _drop_empty_images(tokens: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """An image whose source was held back shows its alternative text instead of a gap."""
    for token in tokens:
        if token.get("type") in ("StartTag", "EmptyTag") and token.get("name") == "img":
            attributes = token.get("data", {})
            if (None, "src") not in attributes:
                alt = str(attributes.get((None, "alt"), "")).strip()
                if alt:
                    yield {"type": "Characters", "data": f"[{alt}]"}
                continue
        yield token


class _ImageFilter:
    """bleach runs its filters on the sanitised token stream."""

    def __init__(self, source: Iterable[dict[str, Any]]) -> None:
        self.source = source

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return _drop_empty_images(self.source)


_REMOTE_IMAGE = re.compile(r"<img\b[^>]*?\bsrc\s*=\s*[\"']?\s*https?://", re.IGNORECASE)


def has_remote_images(html: str) -> bool:
    """Whether the reading page should offer "show images", without sanitising twice.

    The page only needs a yes or no; the sandboxed body document does the real work. Read
    generously (entities decoded): offering the button once too often is harmless.
    """
    return _REMOTE_IMAGE.search(unescape(html)) is not None


def sanitise(html: str, *, show_images: bool) -> SanitisedHtml:
    """The mail's HTML with only formatting left; remote images only if ``show_images``."""
    blocked = 0

    def allow(tag: str, name: str, value: str) -> bool:
        nonlocal blocked
        if tag == "img" and name == "src":
            remote = value.strip().lower().startswith(("https://", "http://"))
            if remote and not show_images:
                blocked += 1
            return remote and show_images
        return name in COMMON_ATTRIBUTES or name in TAG_ATTRIBUTES.get(tag, frozenset())

    cleaner = Cleaner(tags=ALLOWED_TAGS, attributes=allow, protocols=LINK_PROTOCOLS,
                      strip=True, strip_comments=True, filters=[_ImageFilter],
                      css_sanitizer=_StrictCSS(allowed_css_properties=CSS_PROPERTIES))
    # bleach's parser turns tags it does not allow into text while parsing; it must see
    # the dropped ones as elements so that _drop_contents can take them out whole.
    cleaner.parser = html5lib_shim.BleachHTMLParser(
        tags=ALLOWED_TAGS | DROPPED_WITH_CONTENT, strip=True, consume_entities=False,
        namespaceHTMLElements=False)
    walk = cleaner.walker
    cleaner.walker = lambda dom: _drop_contents(walk(dom))
    return SanitisedHtml(cleaner.clean(html), blocked)
