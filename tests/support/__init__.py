"""Helpers every tier of the suite shares; the tiers import from here, never from each other."""
