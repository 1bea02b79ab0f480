# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module utility is PRIVATE to the collection. It can change at any time.

"""TLS within a budget: SSL contexts from the check options, a handshake bounded by the time left, and the ``tls_cert`` check.

cryptography, which reads the certificate, is only imported when a ``tls_cert`` check runs.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import os
import select
import socket
import ssl
import typing as t

from ansible_collections.dihya.ops.plugins.module_utils._optional import optional_library
from ansible_collections.dihya.ops.plugins.module_utils._probe_common import (
    Budget,
    CheckConfigError,
    Options,
    Outcome,
    bool_option,
    describe_error,
    option,
    port_option,
    require,
)
from ansible_collections.dihya.ops.plugins.module_utils._probe_tcp import connect

DEFAULT_MIN_DAYS_VALID = 14
TLS_CERT_OPTIONS = frozenset(('host', 'port', 'server_name', 'min_days_valid', 'validate_certs', 'ca_path'))
# What the missing-library error says needs cryptography.
_CRYPTOGRAPHY_PURPOSE = 'a tls_cert check'


def client_context(validate_certs: bool, ca_path: str | None) -> ssl.SSLContext:
    """A client context trusting ``ca_path`` (a PEM file or hashed directory) or the system store; no verification without ``validate_certs``."""
    if ca_path is not None and not os.path.exists(ca_path):
        raise CheckConfigError(f'ca_path {ca_path} does not exist')
    try:
        hashed_directory = ca_path is not None and os.path.isdir(ca_path)
        context = ssl.create_default_context(capath=ca_path) if hashed_directory else ssl.create_default_context(cafile=ca_path)
    except (ssl.SSLError, OSError) as exc:
        raise CheckConfigError(f'cannot load CA certificates from {ca_path}: {describe_error(exc)}') from exc
    if not validate_certs:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def tls_handshake(sock: socket.socket, context: ssl.SSLContext, server_name: str, budget: Budget) -> ssl.SSLSocket:
    """Wrap ``sock`` in TLS and finish the handshake before the budget runs out, however slowly the peer answers.

    The handshake runs on a non-blocking socket, waiting with ``poll`` for the time left, so a peer
    that trickles its handshake records cannot stretch it.
    """
    phase = 'during the TLS handshake'
    try:
        budget.remaining(phase)
        sock.setblocking(False)
        tls = context.wrap_socket(sock, server_hostname=server_name, do_handshake_on_connect=False)
    except BaseException:
        sock.close()
        raise
    try:
        poller = select.poll()
        poller.register(tls.fileno(), select.POLLIN)
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                poller.modify(tls.fileno(), select.POLLIN)
            except ssl.SSLWantWriteError:
                poller.modify(tls.fileno(), select.POLLOUT)
            if not poller.poll(max(1, math.ceil(budget.remaining(phase) * 1000))):
                budget.remaining(phase)
        tls.settimeout(budget.remaining(phase))
    except BaseException:
        tls.close()
        raise
    return tls


@dataclasses.dataclass(frozen=True)
class TlsCertConfig:
    host: str
    port: int
    server_name: str | None
    min_days_valid: int
    ssl_context: ssl.SSLContext

    def context(self) -> dict[str, t.Any]:
        """Details reported even when the connection fails."""
        return {'host': self.host, 'port': self.port}


def parse_tls_cert(options: Options) -> TlsCertConfig:
    """Validate the options of a ``tls_cert`` check."""
    optional_library('cryptography.x509', _CRYPTOGRAPHY_PURPOSE, error=CheckConfigError)
    host = str(require(options, 'host', 'tls_cert'))
    min_days = option(options, 'min_days_valid', DEFAULT_MIN_DAYS_VALID)
    if isinstance(min_days, bool) or not isinstance(min_days, int) or min_days < 0:
        raise CheckConfigError(f'min_days_valid must be an integer of 0 or more (got {min_days!r})')
    server_name = options.get('server_name')
    return TlsCertConfig(
        host=host,
        port=port_option(option(options, 'port', 443)),
        server_name=str(server_name) if server_name else None,
        min_days_valid=min_days,
        ssl_context=client_context(bool_option(options, 'validate_certs', False), options.get('ca_path')),
    )


def probe_tls_cert(config: TlsCertConfig, timeout: float) -> Outcome:
    """Fetch the peer certificate and report how many days it stays valid."""
    budget = Budget(timeout)
    with tls_handshake(connect(config.host, config.port, budget), config.ssl_context, config.server_name or config.host, budget) as tls:
        der = tls.getpeercert(binary_form=True)
    if not der:  # pragma: no cover - a TLS server always presents a certificate to a client that asks
        return Outcome(False, 'the server sent no certificate')
    certificate = optional_library('cryptography.x509', _CRYPTOGRAPHY_PURPOSE, error=CheckConfigError).load_der_x509_certificate(der)
    not_after = certificate.not_valid_after_utc
    not_before = certificate.not_valid_before_utc
    now = datetime.datetime.now(datetime.timezone.utc)  # noqa: UP017 - datetime.UTC is Python 3.11+, targets may run 3.10
    days_left = math.floor((not_after - now).total_seconds() / 86400)
    details = {
        'days_left': days_left,
        'not_after': not_after.isoformat(),
        'not_before': not_before.isoformat(),
        'subject': certificate.subject.rfc4514_string(),
        'issuer': certificate.issuer.rfc4514_string(),
    }
    if now < not_before:
        return Outcome(False, f'not valid before {not_before.isoformat()}', details)
    if now >= not_after:
        ago = math.floor((now - not_after).total_seconds() / 86400)
        return Outcome(False, f'expired {ago} day(s) ago' if ago else 'expired less than a day ago', details)
    message = f'expires in {days_left} days'
    if days_left < config.min_days_valid:
        return Outcome(False, f'{message} (< {config.min_days_valid})', details)
    return Outcome(True, message, details)
