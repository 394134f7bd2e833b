from netshift.cli import main

raise SystemExit(main())
