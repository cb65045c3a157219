"""New members of PEFT's ``PeftType``, a closed ``str`` enum: ``register_peft_method`` accepts only names it holds.

A member is built the way ``enum`` builds one (a ``str`` of the enum's class with ``_name_`` and ``_value_``) and
entered in the enum's three tables, so ``PeftType.DEPT``, ``PeftType("DEPT")``, ``PeftType["DEPT"]`` and
``"DEPT" in list(PeftType)`` all work, and it compares and hashes as the plain string (what PEFT's mappings need).
"""

from __future__ import annotations

from peft.utils import PeftType


def add_peft_type(name: str) -> PeftType:
    """The ``PeftType`` member ``name`` (upper case), added when it is not there yet."""
    if name in PeftType.__members__:
        return PeftType[name]
    member = str.__new__(PeftType, name)
    member._name_, member._value_ = name, name
    member.__objclass__ = PeftType
    PeftType._member_map_[name] = member
    PeftType._value2member_map_[name] = member
    PeftType._member_names_.append(name)
    type.__setattr__(PeftType, name, member)
    return member
