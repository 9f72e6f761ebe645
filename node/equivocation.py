"""A node's part in equivocation (core.evidence): when its chain first sees two conflicting
messages of a producer, the node reports them on chain with a `report_equivocation` tx signed
with its own key as its producer's account, if that key is the account's key (as on a testnet).
Otherwise, or when the report is refused (another node's came first, say), the pair stays in
`GET /v1/producers` for an operator to report with `cli.py tx report-equivocation`."""
import asyncio
import logging

from core.errors import ProtocolError
from core.evidence import Equivocation
from core.types import Tx
from state import transition

log = logging.getLogger("node")
REPORT_EXPIRY_MS = 600_000  # how long a report of ours may wait for a block


class EquivocationReporter:
    def __init__(self, service, now_ms):
        self.service, self.now_ms = service, now_ms
        self.reported: set[str] = set()  # producers whose equivocation this node reported

    def on_evidence(self, evidence: Equivocation) -> None:
        """The chain's `on_evidence`: report once the chain's current call is done."""
        log.warning("%s equivocated in slot %d (%s)", evidence.producer, evidence.slot, evidence.kind)
        try:
            asyncio.get_running_loop().call_soon(self.report, evidence)
        except RuntimeError:  # no event loop: a tool driving the service directly
            self.report(evidence)

    def report(self, evidence: Equivocation) -> Tx | None:
        """Submit the report (see the module docstring); the tx, or None if none was sent."""
        s = self.service
        if s.producer_key is None or evidence.producer in self.reported:
            return None  # one report per producer: its first equivocation bars it for good
        account = transition.get_account(s.chain.final.layer, s.producer_name)
        if account is None or account.public_key != s.producer_key.public_key:
            log.warning("not reporting it: this node's key is not the account key of %s", s.producer_name)
            return None
        expires = self.now_ms() + min(REPORT_EXPIRY_MS, s.genesis.params.max_tx_expiry_ms)
        tx = Tx.create(s.producer_key, s.genesis.chain_id, "report_equivocation", s.producer_name,
                       expires, evidence.body())
        try:
            s.submit(tx)
        except ProtocolError as e:
            log.info("equivocation report of %s refused: %s", evidence.producer, e)
            return None
        self.reported.add(evidence.producer)
        log.warning("reported the equivocation of %s in tx %s", evidence.producer, tx.id.hex())
        return tx
