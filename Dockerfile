# community-chain node image: the project installed with pip (pip install .), run as a non-root
# user, its data in a volume, its settings in /config/node.toml (docs/operators.md).
#
#   docker build -t community-chain .
#   docker run -v chain-data:/data -v $PWD/node.toml:/config/node.toml:ro \
#              -v $PWD/genesis.json:/config/genesis.json:ro -p 8080:8080 community-chain
#
# A 4-validator network: deploy/make-compose-chain.sh, then docker compose -f deploy/docker-compose.yml up.

FROM python:3.11-slim AS build
# plyvel, pynacl, msgpack and uvloop come as manylinux wheels (LevelDB is inside plyvel's), so no
# compiler is needed; the venv is copied whole into the runtime stage.
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md cli.py ./
COPY core ./core
COPY state ./state
COPY consensus ./consensus
COPY contracts ./contracts
COPY p2p ./p2p
COPY node ./node
RUN pip install . && community-chain --help > /dev/null

FROM python:3.11-slim
# a fixed uid, so that host-side files (the key file, mode 0600) can be given to it:
# deploy/make-compose-chain.sh chowns the producer keys to 10001
RUN groupadd --system --gid 10001 chain \
 && useradd --system --uid 10001 --gid chain --home-dir /data --no-create-home --shell /usr/sbin/nologin chain \
 && mkdir -p /data /config \
 && chown chain:chain /data
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1
USER chain
WORKDIR /data
# a named volume mounted here starts with the image's /data, owned by `chain`
VOLUME ["/data"]
# the wallet API (/v1/), /metrics and the peers' /p2p/ routes share this port (docs/operators.md)
EXPOSE 8080
# the node's own view: answers only once its API is up (port 8080, as the compose configs)
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8080/v1/status', timeout=2)"]
# SIGTERM (docker stop) shuts the node down cleanly; it exits 70 when it stopped itself (a
# broken invariant, a full disk): a restart policy (`restart: on-failure`) brings it back
STOPSIGNAL SIGTERM
ENTRYPOINT ["community-chain"]
CMD ["node", "run", "--config", "/config/node.toml"]
