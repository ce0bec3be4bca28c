"""`python -m fqdn_policy`: the same command as `fqdn-policy`."""

from fqdn_policy.cli.main import main

raise SystemExit(main())
