"""PURE decisions: a method's evidence + parameters -> a :class:`~smoothcert.records.CertifyResult`.

One module per method family; no torch. The same functions certify right after
sampling, re-certify saved results offline (``smoothcert recertify``), check a worker's
output and will decide between the rounds of sequential sampling.
"""
