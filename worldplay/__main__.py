from worldplay.cli import main

raise SystemExit(main())
