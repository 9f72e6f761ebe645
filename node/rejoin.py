"""A producer's way back after it was jailed for leaving its slots empty (consensus.schedule):
once its node runs and follows the chain again, it sends an `unjail` tx signed with its own key
as its producer's account, if that key is the account's key (as on a testnet), and again if that
tx expired unapplied. Otherwise it logs, once per jailing, what the operator must send."""
import logging

from core.errors import ProtocolError
from core.types import Tx
from state import transition

log = logging.getLogger("node")
UNJAIL_EXPIRY_MS = 60_000


class Rejoin:
    def __init__(self, service, now_ms):
        self.service, self.now_ms = service, now_ms
        self._sent: tuple[int, int] | None = None  # (jailed height, expiry of our unjail tx)

    def check(self) -> Tx | None:
        """After a commit: if this node's producer is jailed in final state and has not said it is
        back since, send `unjail`. Returns the tx sent, if any."""
        s = self.service
        if s.producer_key is None:
            return None
        height = s.chain.schedules.jailed.get(s.producer_name)
        if height is None:
            return None
        record = transition.get_producer(s.chain.final.layer, s.producer_name)
        if record is None or record.unjailed_height > height:
            return None
        if self._sent is not None and self._sent[0] == height and self.now_ms() < self._sent[1]:
            return None  # ours is on its way
        account = transition.get_account(s.chain.final.layer, s.producer_name)
        if account is None or account.public_key != s.producer_key.public_key:
            if self._sent is None or self._sent[0] != height:
                log.warning("%s was jailed for empty slots at height %d: send `cli.py tx unjail` with "
                            "its account key once this node produces again", s.producer_name, height)
                self._sent = (height, 2**63 - 1)
            return None
        expires = self.now_ms() + min(UNJAIL_EXPIRY_MS, s.genesis.params.max_tx_expiry_ms)
        tx = Tx.create(s.producer_key, s.genesis.chain_id, "unjail", s.producer_name, expires, {})
        self._sent = (height, expires)
        try:
            s.submit(tx)
        except ProtocolError as e:
            log.info("unjail of %s refused: %s", s.producer_name, e)
            return None
        log.warning("%s was jailed for empty slots at height %d; sent unjail in tx %s",
                    s.producer_name, height, tx.id.hex())
        return tx
