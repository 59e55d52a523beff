from murmur_devstack.cli import main

raise SystemExit(main())
