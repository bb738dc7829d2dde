"""The branding page's form: name, colours, logo, portal host and notification texts."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from wtforms import BooleanField, StringField, SubmitField, TextAreaField
from wtforms.validators import Length, Optional, Regexp

from keydir import branding
from keydir.mailbox_models import LANGUAGES

_HEX = Regexp(r"^\s*(#[0-9a-fA-F]{6})?\s*$",
              message=_l("Write the colour as # and six hex digits, e.g. #1f4e79, or leave "
                         "it empty."))
LANGUAGE_LABELS = {"de": _l("German"), "en": _l("English"), "fr": _l("French"),
                   "it": _l("Italian")}


class BrandingForm(FlaskForm):
    name = StringField(_l("Name"), validators=[Optional(), Length(max=branding.MAX_NAME)])
    color = StringField(_l("Brand colour"), validators=[_HEX])
    text_color = StringField(_l("Text on the brand colour"), validators=[_HEX])
    logo = FileField(_l("Logo (PNG or JPEG, at most 200 KB)"))
    remove_logo = BooleanField(_l("Remove the logo"))
    portal_host = StringField(_l("Portal host name"), validators=[Optional(), Length(max=253)])
    intro_de = TextAreaField(_l("German"), validators=[Length(max=branding.MAX_INTRO)])
    intro_en = TextAreaField(_l("English"), validators=[Length(max=branding.MAX_INTRO)])
    intro_fr = TextAreaField(_l("French"), validators=[Length(max=branding.MAX_INTRO)])
    intro_it = TextAreaField(_l("Italian"), validators=[Length(max=branding.MAX_INTRO)])
    submit = SubmitField(_l("Save branding"))

    def intros(self) -> dict[str, str]:
        return {language: self[f"intro_{language}"].data or "" for language in LANGUAGES}

    def changes(self, with_host: bool) -> dict[str, object]:
        values: dict[str, object] = {
            "name": self.name.data or "", "color": self.color.data or "",
            "text_color": self.text_color.data or "", "notice_intros": self.intros()}
        if with_host:
            values["portal_host"] = self.portal_host.data or ""
        return values

    def field_for(self, key: str) -> str:
        """The form field a keydir refusal names (notice_intros: the first text)."""
        if key == "notice_intros":
            return "intro_en"
        return key if key in self else "name"
