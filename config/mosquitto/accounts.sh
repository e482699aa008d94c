#!/bin/sh
# Accounts and topic rights of the edge-ids broker (config/mosquitto/edge-ids.conf, dynamic-security plugin).
#
#   accounts.sh init                       before the broker's first start: the plugin's file with an `admin`
#                                          account, and mosquitto_ctrl's options for it in $DIR/mosquitto_ctrl (0600)
#   accounts.sh roles                      broker running: the fixed roles siem, release, monitor
#   accounts.sh gateway <gateway_id> [sensor]   broker running: accounts agent-<gw> and publisher-<gw> with
#                                          roles of their own (a role names the gateway's topics: the plugin of
#                                          Mosquitto 2.0 has no %u/%c patterns)
#   accounts.sh operator siem|release|monitor [username]   broker running: an operator account
#
# Every account is bound to one client id: agent-<gw> to edge-ids-<gw> and publisher-<gw> to
# edge-ids-flowmeter-<gw>-<sensor> (the daemons' defaults; sensor default `flowmeter`), an operator to its
# username. No account can then use another's client id, which would take over its session: disconnect it and
# receive what the broker queued for it. Each account gets a fresh random password, written once to
# $OUT/<username>.password (0600) for the client's mqtt.password_file or its systemd credential `mqtt-password`.
# Changes apply at once (no reload). `admin` can change every role, so it can do anything: keep
# $DIR/mosquitto_ctrl (its password) on the broker host, readable by root only.
#
# Environment: DIR (/etc/mosquitto/edge-ids), DYNSEC_FILE (/var/lib/mosquitto/edge-ids-dynsec.json),
# BROKER_HOST (localhost: must match the broker certificate), BROKER_PORT (8883), PREFIX (edge-ids: the
# agents' mqtt.topic_prefix), OUT (./edge-ids-secrets).
set -eu

DIR=${DIR:-/etc/mosquitto/edge-ids}
DYNSEC_FILE=${DYNSEC_FILE:-/var/lib/mosquitto/edge-ids-dynsec.json}
BROKER_HOST=${BROKER_HOST:-localhost}
BROKER_PORT=${BROKER_PORT:-8883}
PREFIX=${PREFIX:-edge-ids}
OUT=${OUT:-./edge-ids-secrets}
CTRL="$DIR/mosquitto_ctrl"  # read from $XDG_CONFIG_HOME (mosquitto_ctrl 2.0.11 ignores its -o option)

usage() {
    sed -n '4,10p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

new_password() {
    od -An -tx1 -N18 /dev/urandom | tr -d ' \n'
}

# keep <username> <password>: the password, readable by its owner only
keep() {
    mkdir -p "$OUT"
    chmod 0700 "$OUT"
    (umask 077 && printf '%s\n' "$2" >"$OUT/$1.password")
    echo "$1: password in $OUT/$1.password"
}

ctrl() {
    XDG_CONFIG_HOME=$DIR mosquitto_ctrl dynsec "$@" >/dev/null
}

# role <name> <acltype> <topic> [<acltype> <topic>]...: a new role allowing exactly these; a subscription also
# allows receiving its messages (checked again at delivery: receiving is denied by default, see init)
role() {
    name=$1
    shift
    ctrl createRole "$name"
    while [ $# -ge 2 ]; do
        ctrl addRoleACL "$name" "$1" "$2" allow
        case $1:$2 in
        subscribePattern:\$share/*) ;;
        subscribePattern:*) ctrl addRoleACL "$name" publishClientReceive "$2" allow ;;
        esac
        shift 2
    done
}

# account <username> <client id> <role>
account() {
    password=$(new_password)
    ctrl createClient "$1" -c "$2" -p "$password"
    ctrl addClientRole "$1" "$3"
    keep "$1" "$password"
}

[ $# -ge 1 ] || usage
case $1 in
init)
    [ ! -e "$DYNSEC_FILE" ] || { echo "$0: $DYNSEC_FILE exists" >&2; exit 1; }
    mkdir -p "$DIR" "$(dirname "$DYNSEC_FILE")"
    password=$(new_password)
    mosquitto_ctrl dynsec init "$DYNSEC_FILE" admin "$password" >/dev/null
    # deny receiving by default too (the plugin allows it): a message reaches only a role that may read it
    sed -i -E 's/("publishClientReceive":[[:space:]]*)true/\1false/' "$DYNSEC_FILE"
    if ! grep -Eq '"publishClientReceive":[[:space:]]*false' "$DYNSEC_FILE"; then
        echo "$0: cannot set the default of publishClientReceive in $DYNSEC_FILE" >&2
        exit 1
    fi
    chown mosquitto: "$DYNSEC_FILE" 2>/dev/null || true
    chmod 0600 "$DYNSEC_FILE"
    (umask 077 && printf -- '-h %s\n-p %s\n--cafile %s\n-u admin\n-P %s\n' \
        "$BROKER_HOST" "$BROKER_PORT" "$DIR/certs/ca.crt" "$password" >"$CTRL")
    echo "admin: mosquitto_ctrl options in $CTRL; start the broker, then: $0 roles"
    ;;
roles)
    role siem subscribePattern "$PREFIX/+/alerts" subscribePattern "$PREFIX/+/events"
    role release publishClientSend "$PREFIX/fleet/bundle" subscribePattern "$PREFIX/+/bundle/status"
    set --
    for leaf in status status/+ stats stats/+ verdicts deadletter bundle/status flowmeter/+/status \
        flowmeter/+/stats; do
        set -- "$@" subscribePattern "$PREFIX/+/$leaf"
    done
    role monitor "$@"
    echo "roles siem, release, monitor created"
    ;;
gateway)
    [ $# -ge 2 ] && [ $# -le 3 ] || usage
    gw=$2 sensor=${3:-flowmeter}
    # one topic level, as the agent's gateway_id; `fleet` is the bundle topic's level
    if ! printf '%s' "$gw" | grep -Eqx '[A-Za-z0-9_.-]+' || [ "$gw" = fleet ]; then
        echo "$0: gateway_id must be one topic level of [A-Za-z0-9_.-] and not 'fleet': $gw" >&2
        exit 2
    fi
    g="$PREFIX/$gw"
    # the agent: its flows (also as a shared subscription, mqtt.shared_group) and the fleet's bundles in;
    # alerts, events, verdicts, dead letters, bundle install status, status (retained, Last Will) and stats out
    # (status/<client_id> and stats/<client_id> in a shared group)
    set -- subscribePattern "$g/flows" subscribePattern "\$share/+/$g/flows" subscribePattern "$PREFIX/fleet/bundle"
    for leaf in alerts events verdicts deadletter bundle/status status status/+ stats stats/+; do
        set -- "$@" publishClientSend "$g/$leaf"
    done
    role "agent-$gw" "$@"
    # the flow meter or iotids-replay: the gateway's flows out, the meter's status (Last Will) and stats
    role "publisher-$gw" publishClientSend "$g/flows" publishClientSend "$g/flowmeter/+/status" \
        publishClientSend "$g/flowmeter/+/stats"
    account "agent-$gw" "edge-ids-$gw" "agent-$gw"
    account "publisher-$gw" "edge-ids-flowmeter-$gw-$sensor" "publisher-$gw"
    ;;
operator)
    [ $# -ge 2 ] && [ $# -le 3 ] || usage
    case $2 in siem | release | monitor) ;; *) usage ;; esac
    account "${3:-$2}" "${3:-$2}" "$2"
    ;;
*) usage ;;
esac
