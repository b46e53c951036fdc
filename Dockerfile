# User code image for koku-dagster: the package with dagster-postgres and dagster-k8s. The same image serves
# the code location (gRPC) and every run pod that the K8sRunLauncher starts. The webserver and the daemon may
# use this image too, or Dagster's own images of the same Dagster version (1.13.27).
#
#   docker build -t koku-dagster:$(git rev-parse --short HEAD) .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    DAGSTER_HOME=/opt/dagster/dagster_home \
    KOKU_HOME=/var/lib/koku

WORKDIR /opt/dagster/app
COPY pyproject.toml README.md ./
COPY koku_dagster ./koku_dagster
# dagster-k8s follows the Dagster release train (1.13.27 <-> 0.29.27), as dagster-postgres does.
RUN pip install . "dagster-k8s==0.29.27" \
    && useradd --system --uid 10001 --home-dir /var/lib/koku koku \
    && mkdir -p "$DAGSTER_HOME" "$KOKU_HOME" \
    && chown koku "$KOKU_HOME"
COPY workspace.yaml ./
# Outside Kubernetes the instance file is the repository's settings plus the PostgreSQL storage block;
# under the Helm chart a ConfigMap mounted at $DAGSTER_HOME/dagster.yaml takes its place.
COPY dagster.yaml deploy/dagster-postgres.yaml /tmp/instance/
RUN cat /tmp/instance/dagster.yaml /tmp/instance/dagster-postgres.yaml > "$DAGSTER_HOME/dagster.yaml" \
    && rm -r /tmp/instance

USER koku
EXPOSE 3030
# The code location server; the Helm chart passes the same arguments (dagsterApiGrpcArgs).
CMD ["dagster", "api", "grpc", "-h", "0.0.0.0", "-p", "3030", "-m", "koku_dagster.definitions", \
     "--location-name", "koku_dagster"]
