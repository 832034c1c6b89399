# The image deploy/ refers to. No container runtime exists on the
# development machines, so this is built by release CI, not by `make test`.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -tags kustomize_disable_go_plugin_support -ldflags "-s -w -X github.com/bouncer-policy/bouncer/pkg/cli.Version=${VERSION}" -o /bouncer ./cmd/bouncer

FROM gcr.io/distroless/static:nonroot
COPY --from=build /bouncer /bouncer
USER 65532:65532
ENTRYPOINT ["/bouncer"]
