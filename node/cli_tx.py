"""`tx`: sign transactions with a key file or a dev key and submit them to a node, or sign them
offline into a file (`--offline --out FILE`) that `tx broadcast FILE` submits later."""
import re
from pathlib import Path

import click

from contracts import CompileError, compile_source
from core.crypto import Keypair
from core.devnet import load_dev_keys
from core.genesis import DEFAULT_DEV_KEYS
from core.evidence import KINDS as EVIDENCE_KINDS
from core.types import MAX_INT, MAX_RULES_CODE_BYTES, Tx
from core.wallet import DEFAULT_TTL_MS, Client, Wallet, reached
from node.cli_params import (AMOUNT, EXIT_NOT_REACHED, EXIT_REJECTED, NAME, HexBytes, Time, echo_json,
                             node_option, passphrase_option, read_key_file_or_fail)
from node.keystore import write_key_file


def signer_options(f):
    """--node, --key-file / --dev, --dev-keys, --chain-id: who signs, for which chain."""
    for opt in reversed([
        node_option,
        click.option("--key-file", type=click.Path(exists=True, dir_okay=False),
                     help="The signer's key file."),
        click.option("--dev", metavar="NAME", help="Sign with NAME's public dev key."),
        click.option("--dev-keys", type=click.Path(dir_okay=False), default=str(DEFAULT_DEV_KEYS),
                     show_default="the embedded chain's", help="dev-keys.json used by --dev."),
        click.option("--chain-id", help="Chain to sign for (default: asked from the node; "
                                        "required with --offline)."),
        passphrase_option,
    ]):
        f = opt(f)
    return f


class Duration(click.ParamType):
    """'90s', '10m', '1h': a span of time, in milliseconds."""

    name = "DURATION"

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        m = re.fullmatch(r"(\d+)([smh])", value)
        if m is None or int(m.group(1)) == 0:
            self.fail(f"{value!r}: use N followed by s, m or h, e.g. 10m", param, ctx)
        return int(m.group(1)) * Time.UNITS[m.group(2)]


def send_options(f):
    """--wait, --timeout, --print-id for a tx sent now; --offline --out FILE to sign it into a
    file instead; --expires-in."""
    f = click.option("--expires-in", "ttl_ms", type=Duration(), default=f"{DEFAULT_TTL_MS // 60_000}m",
                     show_default=True, help="The tx expires this long after signing (the chain "
                     "refuses more than max_tx_expiry_ms of GET /v1/params, 1h by default).")(f)
    f = click.option("--out", "out_file", type=click.Path(dir_okay=False, path_type=Path),
                     help="With --offline: the file to write the signed tx to.")(f)
    f = click.option("--offline", is_flag=True,
                     help="Sign without contacting a node (needs --chain-id and --out FILE); "
                          "submit the file later with `tx broadcast FILE`.")(f)
    f = click.option("--print-id", is_flag=True,
                     help="Print only the tx id, for scripts: ID=$(python cli.py tx ... --print-id).")(f)
    f = click.option("--timeout", type=click.FloatRange(0, 120), default=30.0, show_default=True,
                     help="Seconds to wait for --wait; not reached by then: exit code 4.")(f)
    return click.option("--wait", type=click.Choice(["final", "included", "none"]), default="final",
                        show_default=True, help="Answer once the tx reaches this status.")(f)


def _wallet(opts: dict, client: Client | None) -> Wallet:
    """The signer of opts; the chain id from --chain-id, else asked from `client` (None: offline,
    then --chain-id is required)."""
    if bool(opts["key_file"]) == bool(opts["dev"]):
        raise click.UsageError("give exactly one of --key-file FILE or --dev NAME")
    if client is None and not opts["chain_id"]:
        raise click.UsageError("--offline signs for the chain given by --chain-id ID "
                               "(`query status` shows a node's chain_id)")
    if opts["key_file"]:
        kf = read_key_file_or_fail(opts["key_file"], opts["passphrase_file"])
        name, key = kf.name, kf.key
    else:
        try:
            dev = load_dev_keys(opts["dev_keys"])
        except (OSError, ValueError, KeyError) as e:
            raise click.UsageError(f"cannot read dev keys {opts['dev_keys']}: {e}") from None
        if opts["dev"] not in dev:
            raise click.BadParameter(f"no dev key {opts['dev']!r}; known: {', '.join(dev)}",
                                     param_hint="--dev")
        name, key = opts["dev"], dev[opts["dev"]]
    return Wallet(name, key, opts["chain_id"] or client.status()["chain_id"],
                  opts.get("ttl_ms", DEFAULT_TTL_MS))


def _check_offline(opts: dict) -> None:
    if opts["offline"] and opts["out_file"] is None:
        raise click.UsageError("--offline writes the signed tx to --out FILE: give it")
    if opts["out_file"] is not None and not opts["offline"]:
        raise click.UsageError("--out FILE is for --offline signing")


def _send(opts: dict, build) -> None:
    """Sign with the chosen key, submit, print the node's answer; exit 1 if it was rejected, 4 if
    it did not reach the --wait status within --timeout. With --offline: sign and write the tx's
    wire bytes to --out FILE, contacting no node."""
    _check_offline(opts)
    if opts["offline"]:
        tx = build(_wallet(opts, None))
        opts["out_file"].parent.mkdir(parents=True, exist_ok=True)
        opts["out_file"].write_bytes(tx.raw)
        if opts["print_id"]:
            click.echo(tx.id.hex())
        else:
            echo_json({"id": tx.id.hex(), "file": str(opts["out_file"]), "kind": tx.kind,
                       "sender": tx.sender, "chain_id": tx.chain_id, "expires_at": tx.expires_at})
        click.echo(f"signed offline; submit before it expires with: python cli.py tx broadcast "
                   f"{opts['out_file']} --node URL", err=True)
        return
    with Client(opts["node"]) as client:
        tx = build(_wallet(opts, client))
        _submit(client, tx, opts)


def _submit(client: Client, tx: Tx, opts: dict) -> None:
    result = client.submit(tx, wait=opts["wait"], timeout_s=opts["timeout"])
    if opts["print_id"] and result.get("status") != "rejected":
        click.echo(result["id"])
    else:
        echo_json(result)
    if result.get("status") == "rejected":
        err = result.get("error", {})
        click.echo(f"rejected: {err.get('code')}: {err.get('message')}", err=True)
        raise click.exceptions.Exit(EXIT_REJECTED)
    if opts["wait"] != "none" and not reached(result, opts["wait"]):
        click.echo(f"not {opts['wait']} after {opts['timeout']:g}s (still {result.get('status')}); "
                   f"follow it with: python cli.py query tx {result.get('id')} --wait 60\n"
                   f"is the chain stalled? see `stalled` in: python cli.py query status", err=True)
        raise click.exceptions.Exit(EXIT_NOT_REACHED)


@click.group()
def tx():
    """Sign and submit transactions (amounts are in milli-units: 1000 = 1.000 CP).

    \b
    Exit codes: 0 ok (the tx reached the --wait status), 1 the node rejected it,
    2 usage error, 3 the node could not be reached, 4 not final (or included, with
    --wait included) within --timeout: it may still be, later.
    """


@tx.command("post")
@click.option("--permlink", required=True, help="Unique slug among your posts, e.g. hello-world.")
@click.option("--title", required=True)
@click.option("--body", "text", required=True)
@click.option("--tag", "tags", multiple=True, help="Up to 5 (repeatable).")
@click.option("--parent", metavar="AUTHOR/PERMLINK", help="Makes this a comment on that post.")
@click.option("--starts", type=Time(), help="Event start (makes the post an event).")
@click.option("--ends", type=Time(), help="Event end, e.g. +2h.")
@click.option("--capacity", type=click.IntRange(1, 1_000_000), help="Event capacity.")
@signer_options
@send_options
def tx_post(permlink, title, text, tags, parent, starts, ends, capacity, **opts):
    """Publish a post, a comment, or an event members can attend."""
    event = None
    if (starts, ends, capacity) != (None, None, None):
        if None in (starts, ends, capacity):
            raise click.UsageError("an event needs --starts, --ends and --capacity")
        event = {"starts_at": starts, "ends_at": ends, "capacity": capacity}
    _send(opts, lambda w: w.post(permlink, title, text, tags, parent, event))


@tx.command("vote")
@click.option("--post", "ref", required=True, metavar="AUTHOR/PERMLINK")
@click.option("--weight", type=click.IntRange(-10000, 10000), default=10000, show_default=True,
              help="Basis points; negative to down-vote.")
@signer_options
@send_options
def tx_vote(ref, weight, **opts):
    """Curation vote on a post."""
    _send(opts, lambda w: w.vote_post(ref, weight))


@tx.command("approve")
@click.option("--producer", required=True, type=NAME)
@click.option("--revoke", is_flag=True, help="Withdraw the approval instead.")
@signer_options
@send_options
def tx_approve(producer, revoke, **opts):
    """Approve (with your stake) a block-producer candidate."""
    _send(opts, lambda w: w.approve_producer(producer, not revoke))


@tx.command("ticket")
@click.option("--event", "ref", required=True, metavar="AUTHOR/PERMLINK")
@click.option("--attendee", required=True, type=NAME)
@signer_options
def tx_ticket(ref, attendee, **opts):
    """As the event's organizer, print a hex ticket admitting ATTENDEE (nothing is submitted)."""
    with Client(opts["node"]) as client:  # only contacted when --chain-id is not given
        click.echo(_wallet(opts, client).ticket(ref, attendee).hex())


@tx.command("attend")
@click.option("--event", "ref", required=True, metavar="AUTHOR/PERMLINK")
@click.option("--ticket", required=True, type=HexBytes(64), help="From `tx ticket` by the organizer.")
@signer_options
@send_options
def tx_attend(ref, ticket, **opts):
    """Record your attendance at an event, proven by the organizer's ticket."""
    _send(opts, lambda w: w.attend(ref, ticket))


@tx.command("refer")
@click.option("--new-account", required=True, type=NAME)
@click.option("--pubkey", type=HexBytes(32), help="The new member's public key.")
@click.option("--new-key-file", type=click.Path(dir_okay=False, path_type=Path),
              help="Generate the new member's key into this file instead.")
@signer_options
@send_options
def tx_refer(new_account, pubkey, new_key_file, **opts):
    """Admit a new member."""
    if (pubkey is None) == (new_key_file is None):
        raise click.UsageError("give exactly one of --pubkey HEX or --new-key-file FILE")
    if new_key_file is not None:
        if new_key_file.exists():
            raise click.UsageError(f"{new_key_file} exists; choose another --new-key-file")
        key = Keypair.generate()
        write_key_file(new_key_file, new_account, key)  # before sending, so the key is never lost
        click.echo(f"wrote {new_key_file} for {new_account}, unencrypted: hand it over privately, "
                   f"then encrypt it with `python cli.py keys import {new_key_file} --out "
                   f"{new_key_file} --force`", err=True)
        pubkey = key.public_key
    _send(opts, lambda w: w.refer(new_account, pubkey))


@tx.command("transfer")
@click.option("--to", required=True, type=NAME)
@click.option("--amount", required=True, type=AMOUNT, help="Milli-units.")
@click.option("--memo")
@signer_options
@send_options
def tx_transfer(to, amount, memo, **opts):
    """Send CP to another member."""
    _send(opts, lambda w: w.transfer(to, amount, memo))


@tx.command("stake")
@click.option("--amount", required=True, type=AMOUNT, help="Milli-units.")
@signer_options
@send_options
def tx_stake(amount, **opts):
    """Lock balance as stake. It weighs your producer approvals once it has matured
    (stake_activation_delay_ms of GET /v1/params; until then it shows as `maturing`)."""
    _send(opts, lambda w: w.stake(amount))


@tx.command("unstake")
@click.option("--amount", required=True, type=AMOUNT, help="Milli-units.")
@signer_options
@send_options
def tx_unstake(amount, **opts):
    """Return active stake to your balance. It stops approving at once and is spendable after
    unstake_delay_ms (GET /v1/params; until then it shows as `unbonding`)."""
    _send(opts, lambda w: w.unstake(amount))


@tx.command("register-producer")
@click.option("--url", required=True, help="Public base URL of your node.")
@click.option("--node-key", type=HexBytes(32), help="Block-signing public key (default: yours).")
@signer_options
@send_options
def tx_register_producer(url, node_key, **opts):
    """Become a block-producer candidate."""
    _send(opts, lambda w: w.register_producer(node_key or w.public_key, url))


@tx.command("unjail")
@signer_options
@send_options
def tx_unjail(**opts):
    """Say that your producer node is back after it was jailed for leaving its slots empty
    (`jailed` in GET /v1/producers); the next election may seat it again."""
    _send(opts, lambda w: w.unjail())


@tx.command("report-equivocation")
@click.argument("producer", type=NAME)
@click.option("--evidence-kind", type=click.Choice(sorted(EVIDENCE_KINDS)),
              help="With --first and --second: report this pair instead of the node's evidence.")
@click.option("--first", type=HexBytes(None), help="The first conflicting message (hex).")
@click.option("--second", type=HexBytes(None), help="The second conflicting message (hex).")
@signer_options
@send_options
def tx_report_equivocation(producer, evidence_kind, first, second, **opts):
    """Report on chain the conflicting messages of PRODUCER that the node holds as evidence
    (GET /v1/producers), or the pair given by --evidence-kind, --first and --second (needed with
    --offline); a producer reported once is never elected again. No evidence held: exit 1."""
    _check_offline(opts)
    given = (evidence_kind, first, second)
    if given != (None, None, None):
        if None in given:
            raise click.UsageError("a pair to report needs --evidence-kind, --first and --second")
        evidence = {"kind": evidence_kind, "first": first.hex(), "second": second.hex()}
    elif opts["offline"]:
        raise click.UsageError("--offline cannot ask the node for its evidence: give "
                               "--evidence-kind, --first and --second (from GET /v1/producers)")
    else:
        with Client(opts["node"]) as client:
            held = [e for e in client.producers()["evidence"] if e["producer"] == producer]
        if not held:  # a state of the node, not a mistake on the command line
            click.echo(f"nothing to report: the node at {opts['node']} holds no evidence against "
                       f"{producer}", err=True)
            raise click.exceptions.Exit(EXIT_REJECTED)
        evidence = held[0]
    _send(opts, lambda w: w.report_equivocation(evidence["kind"], bytes.fromhex(evidence["first"]),
                                                bytes.fromhex(evidence["second"])))


@tx.group("govern")
def tx_govern():
    """Propose and approve changes of the rules (producers in office only)."""


class EffectiveHeight(click.ParamType):
    """A block height, or '+N': N blocks after the node's head when the tx is signed."""

    name = "HEIGHT|+N"

    def convert(self, value, param, ctx):
        m = re.fullmatch(r"(\+?)(\d+)", str(value))
        if m is None:
            self.fail(f"{value!r}: use a block height or +N", param, ctx)
        return bool(m.group(1)), int(m.group(2))


def effective_height_option(f):
    return click.option("--effective-height", "height", required=True, type=EffectiveHeight(),
                        help="First block the change applies in: a height, or +N blocks from now.")(f)


def _height(opts: dict, height: tuple[bool, int]) -> int:
    _check_offline(opts)
    relative, n = height
    if not relative:
        return n
    if opts["offline"]:
        raise click.UsageError(f"--effective-height +{n} asks the node for its head: give an "
                               "absolute height with --offline")
    with Client(opts["node"]) as client:
        return client.status()["head"]["height"] + n


@tx_govern.command("set-param")
@click.argument("name")
@click.argument("value", type=click.IntRange(0, MAX_INT))
@effective_height_option
@signer_options
@send_options
def tx_govern_set_param(name, value, height, **opts):
    """Propose setting rules parameter NAME to VALUE (see `query rules`)."""
    at = _height(opts, height)
    _send(opts, lambda w: w.propose_param(name, value, at))


def _rules_code(source_file: Path | None, code_file: Path | None) -> bytes:
    """The bytecode to propose: SOURCE_FILE compiled here, or a precompiled --code file."""
    if (source_file is None) == (code_file is None):
        raise click.UsageError("give exactly one of SOURCE_FILE or --code FILE")
    if code_file is not None:
        code = code_file.read_bytes()
    else:
        try:
            code = compile_source(source_file.read_text(encoding="utf-8"))
        except (CompileError, UnicodeDecodeError) as e:
            raise click.BadParameter(f"{source_file}: {e}", param_hint="SOURCE_FILE") from None
    if not 0 < len(code) <= MAX_RULES_CODE_BYTES:
        raise click.UsageError(f"the bytecode has {len(code)} bytes; a proposal carries "
                               f"1..{MAX_RULES_CODE_BYTES}")
    return code


@tx_govern.command("upgrade-rules")
@click.argument("source_file", required=False,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--code", "code_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Propose this precompiled bytecode (.bin) instead of compiling SOURCE_FILE.")
@effective_height_option
@signer_options
@send_options
def tx_govern_upgrade_rules(source_file, code_file, height, **opts):
    """Propose replacing the rules contract with SOURCE_FILE, compiled here to bytecode (nodes
    verify bytecode and compile nothing), or with the bytecode of --code FILE."""
    code = _rules_code(source_file, code_file)
    at = _height(opts, height)
    _send(opts, lambda w: w.propose_upgrade(code, at))


@tx_govern.command("approve")
@click.argument("proposal_id", type=HexBytes(32))
@signer_options
@send_options
def tx_govern_approve(proposal_id, **opts):
    """Approve a proposal by its id (the id of the tx that proposed it)."""
    _send(opts, lambda w: w.approve_proposal(proposal_id))


@tx.command("broadcast")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@node_option
@click.option("--wait", type=click.Choice(["final", "included", "none"]), default="final",
              show_default=True, help="Answer once the tx reaches this status.")
@click.option("--timeout", type=click.FloatRange(0, 120), default=30.0, show_default=True,
              help="Seconds to wait for --wait; not reached by then: exit code 4.")
@click.option("--print-id", is_flag=True, help="Print only the tx id.")
def tx_broadcast(file, **opts):
    """Submit a tx signed offline (`tx <kind> --offline --out FILE`); exit codes as for any tx."""
    tx = Tx.decode(file.read_bytes())  # (its static checks: a ProtocolError is a usage error)
    with Client(opts["node"]) as client:
        _submit(client, tx, opts)
