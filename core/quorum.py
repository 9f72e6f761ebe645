"""Quorum sizes in one place, shared by consensus (notarization) and the state transition
(governance), which must not import consensus/."""


def notarization_quorum(n_producers: int) -> int:
    """Votes needed to notarize a block: at least 2/3 of the producers, plus one (2n//3 + 1)."""
    return 2 * n_producers // 3 + 1


def governance_quorum(n_producers: int) -> int:
    """Producer approvals a governance proposal needs: the same 2n//3 + 1, so a change of the
    rules has the backing that finalizes blocks."""
    return notarization_quorum(n_producers)
