"""`testnet`: a local multi-validator network in one command."""
import click


@click.command("testnet")
@click.option("--nodes", type=click.IntRange(1, 32),
              help="Number of validator processes  [default: 4, or the folder's own count]")
@click.option("--dir", "directory", default="./testnet", show_default=True,
              help="Folder for keys, genesis, configs and data; reused when it already exists.")
@click.option("--base-port", type=click.IntRange(1024, 65000),
              help="Node i listens on base-port + i  [default: 8080, or the folder's own]")
@click.option("--fresh", is_flag=True,
              help="Delete the testnet the folder holds (chain, keys, data) and create a new one.")
def testnet(nodes, directory, base_port, fresh):
    """Start N validators on loopback, print their URLs and a live status; Ctrl-C stops them all.
    Run again on the same folder, it restarts the same chain."""
    from node.testnet import TestnetMismatch, run_testnet
    try:
        run_testnet(nodes, directory, base_port, fresh)
    except TestnetMismatch as e:
        raise click.UsageError(str(e)) from None
    except RuntimeError as e:  # a node exited or did not answer while starting: its log says why
        raise click.ClickException(str(e)) from None
    except KeyboardInterrupt:
        click.echo("testnet stopped")
