from mriqa.cli import main

raise SystemExit(main())
