from bamboo.cli import main

raise SystemExit(main())
