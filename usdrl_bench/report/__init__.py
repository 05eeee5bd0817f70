"""Reports from the records: tables beside the papers' numbers with intervals over seeds (:mod:`.tables`,
:mod:`.stats`), the leaderboard's ranking and significance tests (:mod:`.leaderboard`), figures
(:mod:`.plots`), and writing them all (:mod:`.writer`)."""
