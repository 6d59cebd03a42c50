#!/bin/sh
# Host discovery for elastic pretraining (horovodrun --host-discovery-script, docs/reliability.md "Elastic
# pretraining"): print the hosts that may run workers now, one "host:slots" per line. Horovod runs
# this every second; a host that disappears loses its workers, one that (re)appears gets new ones.
#
# This example reads them from a file that something else keeps current (a cloud autoscaler hook,
# a spot-interruption handler, or a person): MDNET_ELASTIC_HOSTS, default /etc/mdnet/elastic-hosts.
# Blank lines and lines starting with # are skipped. On a cluster, replace the body with a query of
# your scheduler, e.g. `kubectl get pods -l job=mdnet -o name` or `scontrol show hostnames`.
set -eu
HOSTS_FILE="${MDNET_ELASTIC_HOSTS:-/etc/mdnet/elastic-hosts}"
[ -r "$HOSTS_FILE" ] || exit 0  # no file: no hosts (the driver waits, up to --elastic-timeout)
grep -v -e '^[[:space:]]*#' -e '^[[:space:]]*$' "$HOSTS_FILE" || true
