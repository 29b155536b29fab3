from hsrl.cli import main

raise SystemExit(main())
