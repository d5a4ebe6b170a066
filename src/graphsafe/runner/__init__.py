"""Graph runners. The batch-bucketed ``GraphRunner`` and the capture sentinel are planned work
(issue 7); today the seed's own runners live in :mod:`graphsafe.cases.seed.model`."""
