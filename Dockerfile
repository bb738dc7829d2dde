# sealgate in a container: the whole gateway (SMTP listeners, workers, jobs, web) in one
# process tree, the data directory on a volume, PostgreSQL outside (see compose.yaml).
#   docker build -t sealgate .
#   docker run -v sealgate-data:/var/lib/sealgate -e SEALGATE_DATABASE__URL=... sealgate
FROM python:3.12-slim-bookworm

# openssl: certificate tooling for operators; postgresql-client: 'sealgate backup'.
RUN apt-get update \
 && apt-get install -y --no-install-recommends openssl postgresql-client \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10025 --home-dir /var/lib/sealgate --create-home sealgate

WORKDIR /opt/sealgate
COPY pyproject.toml README.md wsgi.py ./
COPY smime ./smime
COPY keydir ./keydir
COPY relay ./relay
COPY portal ./portal
COPY sealgate ./sealgate
COPY migrations ./migrations
COPY templates ./templates
COPY static ./static
# Installed in place: the pages and assets are read from the source tree.
RUN pip install --no-cache-dir -e .

USER sealgate
ENV SEALGATE_DATA__DIR=/var/lib/sealgate \
    SEALGATE_RELAY__INBOUND_LISTEN=0.0.0.0:2525 \
    SEALGATE_RELAY__OUTBOUND_LISTEN=0.0.0.0:2587 \
    SEALGATE_WEB__LISTEN=0.0.0.0:8080 \
    SEALGATE_LOG__FORMAT=json
VOLUME ["/var/lib/sealgate"]
# Unprivileged ports inside; publish them as 25, 587 and 443 (behind TLS) outside.
EXPOSE 2525 2587 8080
HEALTHCHECK --interval=30s --timeout=5s \
  CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/readyz', timeout=4).status != 200)"
# 'serve' sets up what is missing on the first start (master key, schema, internal CA).
CMD ["sealgate", "serve"]
