# One image with every switchyard binary, statically linked (musl + rustls, no OpenSSL):
#   /usr/local/bin/switchyard-controller   (Deployment; runs as non-root)
#   /usr/local/bin/switchyard-node-agent   (DaemonSet; needs CAP_NET_ADMIN, see the chart)
#   /usr/local/bin/kubectl-switchyard      (the kubectl plugin, for `kubectl cp`/debugging)
#   /usr/local/bin/switchyard-cni          (the CNI shim; the agent's init container copies it
#                                           into the host's CNI bin directory)
# Build: docker build -t ghcr.io/switchyard-dev/switchyard:0.1.0 .
FROM docker.io/library/rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/*
RUN rustup target add "$(uname -m)-unknown-linux-musl"
WORKDIR /src
COPY . .
RUN target="$(uname -m)-unknown-linux-musl" \
 && cargo build --release --locked --target "$target" \
      -p switchyard-controller -p switchyard-node-agent -p kubectl-switchyard -p switchyard-cni \
 && mkdir -p /out \
 && for bin in switchyard-controller switchyard-node-agent kubectl-switchyard switchyard-cni; do \
      cp "target/$target/release/$bin" /out/; \
    done \
 && ! ldd /out/* 2>/dev/null | grep -q '=>'

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/ /usr/local/bin/
# The controller runs as this user; the agent's pod sets runAsUser 0 with only NET_ADMIN.
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/switchyard-controller"]
