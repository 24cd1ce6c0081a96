# The runtime image: `cos` as entrypoint (default `cos serve`), no dev tools, non-root.
#   docker build .  |  podman build .  |  earthly +docker
# BASE is any Debian bookworm image; one with no Python (e.g. made with debootstrap, on a
# machine without registry access) gets Debian's python3 first.
ARG BASE=python:3.11-slim-bookworm

FROM ${BASE} AS build
COPY docker/ca/ /usr/local/share/ca-certificates/
RUN if ! command -v python3 >/dev/null || ! python3 -c "import venv, ensurepip"; then \
        apt-get update && apt-get install -y --no-install-recommends python3 python3-venv \
        ca-certificates && rm -rf /var/lib/apt/lists/*; \
    fi && (command -v update-ca-certificates >/dev/null && update-ca-certificates || true)
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY cos cos
COPY cli cli
COPY migrations migrations
COPY chief_of_state chief_of_state
RUN python3 -m venv /opt/cos && /opt/cos/bin/pip install --no-cache-dir . \
    && /opt/cos/bin/pip uninstall -y pip

FROM ${BASE}
RUN if ! command -v python3 >/dev/null; then \
        apt-get update && apt-get install -y --no-install-recommends python3 \
        && rm -rf /var/lib/apt/lists/*; \
    fi \
    && useradd --uid 10001 --create-home --shell /usr/sbin/nologin cos \
    && mkdir -p /tmp/ray /data && chown cos /tmp/ray /data
COPY --from=build /opt/cos /opt/cos
# Ray keeps its sockets and logs under RAY_TMPDIR; /dev/shm holds its object store.
ENV PATH=/opt/cos/bin:$PATH RAY_TMPDIR=/tmp/ray PYTHONUNBUFFERED=1 COS_ADDRESS=0.0.0.0
USER 10001
WORKDIR /data
EXPOSE 9000
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s CMD ["cos", "health"]
ENTRYPOINT ["cos"]
CMD ["serve"]
