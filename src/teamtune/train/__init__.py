"""Training recipes (one file each: sft.py with ProST, mlpo.py, teamtr.py) over shared parts (losses, common)."""


def recipes() -> dict:
    """method name -> (config dataclass, run function taking (config, console) and returning the run folder)."""
    from . import mlpo, sft, teamtr

    return {
        "sft": (sft.SFTConfig, sft.train),
        "mlpo": (mlpo.MLPOConfig, mlpo.train),
        "teamtr": (teamtr.TeamTRConfig, teamtr.train),
    }
