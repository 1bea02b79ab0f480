# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Helpers shared by the unit, integration and functional tests, imported as ``ansible_collections.dihya.ops.tests.support``.

* :mod:`.tiers`: which tier a test session runs, the ``services`` marker and the guard that keeps the unit tier free of services.
* :mod:`.services`: real supervisord and PostgreSQL instances on loopback.
* :mod:`.processes`: stopping the processes a test started; finding the tools of the test environment.
* :mod:`.tls`: certificates (a CA and the certificates it signs, self-signed ones) made with ``cryptography``.
* :mod:`.fleet`: the demo fleet of the functional tests and the ansible runner that fails on deprecation warnings.
* :mod:`.wheelbuilder`: small, real wheels of test packages, built offline.
* :mod:`.demo_schema`: the demo backend's schema in PostgreSQL terms.
"""
