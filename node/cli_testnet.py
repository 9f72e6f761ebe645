"""`testnet`: a local multi-validator network in one command."""
import click


@click.command("testnet")
@click.option("--nodes", default=4, show_default=True, type=click.IntRange(1, 32),
              help="Number of validator processes.")
@click.option("--dir", "directory", default="./testnet", show_default=True,
              help="Folder for keys, genesis, configs and data; reused when it already exists.")
@click.option("--base-port", default=8080, show_default=True, type=click.IntRange(1024, 65000),
              help="Node i listens on base-port + i.")
def testnet(nodes, directory, base_port):
    """Start N validators on loopback, print their URLs and a live status; Ctrl-C stops them all."""
    from node.testnet import run_testnet
    try:
        run_testnet(nodes, directory, base_port)
    except KeyboardInterrupt:
        click.echo("testnet stopped")
