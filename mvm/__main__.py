from mvm.cli import main

raise SystemExit(main())
