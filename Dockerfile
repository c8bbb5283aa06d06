# syntax=docker/dockerfile:1
# burst: the controller (`burst run`) and the Slack bot (`burst bot serve`) in one image.
#
#   docker build -t burst .                       # public base, wheels from PyPI
#   buildah bud --format docker --build-arg BASE=localhost/debian-python:bookworm \
#       --build-arg PIP_ARGS="--no-index --find-links /src/wheelhouse" -t burst .   # offline
#
# BASE must provide `python3` (>= 3.11) with the venv module: the official python slim image, or a
# Debian rootfs with python3 and python3-venv (docs/operate.md, "Offline build").
ARG BASE=docker.io/library/python:3.11-slim-bookworm

# ---- build stage: turns the source tree into wheels. Compilers, pip and setuptools stay here. ----
FROM ${BASE} AS build
# Extra pip options, e.g. an internal index, or "--no-index --find-links /src/wheelhouse" with a
# wheelhouse/ directory (built on the host with `pip wheel`) placed in the build context.
ARG PIP_ARGS=""
COPY . /src
RUN python3 -m venv /opt/build \
 && /opt/build/bin/pip wheel --no-cache-dir --disable-pip-version-check --wheel-dir /wheels ${PIP_ARGS} /src

# ---- runtime stage: a venv holding burst and its dependencies, nothing else. ----
FROM ${BASE}
COPY --from=build /wheels /tmp/wheels
# pip and setuptools are removed after the install: the image builds nothing at run time.
RUN python3 -m venv /opt/burst \
 && /opt/burst/bin/pip install --no-cache-dir --disable-pip-version-check --no-index --find-links /tmp/wheels burst \
 && /opt/burst/bin/pip uninstall --yes --quiet pip setuptools \
 && rm -rf /tmp/wheels \
 && groupadd --gid 10001 burst \
 && useradd --uid 10001 --gid 10001 --home-dir /var/lib/burst --create-home --shell /usr/sbin/nologin burst
ENV PATH=/opt/burst/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
# The default database_url (sqlite:///.burst/burst.db) is relative: the working directory is the
# burst user's own, writable home. Production points database_url at PostgreSQL.
WORKDIR /var/lib/burst
USER 10001:10001
# The controller's metrics port (`burst run --metrics-port 9464`) answers /healthz while the process
# lives. The bot (`burst bot serve`) serves no health path: its orchestrator probes its TCP port.
EXPOSE 9464 3000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9464/healthz', timeout=4)"]
ENTRYPOINT ["burst"]
CMD ["run", "--config", "/etc/burst/burst.yaml", "--metrics-port", "9464", "--metrics-addr", "0.0.0.0"]
