"""Quorum sizes in one place."""


def notarization_quorum(n_producers: int) -> int:
    """Votes needed to notarize a block: at least 2/3 of the producers, plus one (2n//3 + 1)."""
    return 2 * n_producers // 3 + 1
