"""The ``onnxbuild_optuna`` Hydra sweeper: Optuna 5 (ask/tell, gate failures as constraints) over the
sweep app's points, launched by whatever ``hydra/launcher`` is configured. See pipeline.optuna_search."""


import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.plugins.sweeper import Sweeper


@dataclass
class OnnxbuildOptunaConf:
    _target_: str = "hydra_plugins.onnxbuild_optuna.sweeper.OnnxbuildOptuna"
    n_trials: int = 20
    n_jobs: int = 1  # trials launched together (joblib/Ray/Submitit workers)
    sampler: str = "tpe"  # tpe | random
    seed: int = 0
    n_startup_trials: int = 10  # random trials before TPE models the space
    direction: Any = None  # null: conf/sweep.yaml's objective.direction
    params: dict[str, Any] = field(default_factory=dict)


ConfigStore.instance().store(group="hydra/sweeper", name="onnxbuild_optuna", node=OnnxbuildOptunaConf, provider="onnxbuild")


class OnnxbuildOptuna(Sweeper):
    def __init__(self, n_trials: int, n_jobs: int, sampler: str, seed: int, n_startup_trials: int,
                 direction: Any, params: Any) -> None:
        from omegaconf import OmegaConf

        self.n_trials, self.n_jobs, self.sampler, self.seed = int(n_trials), int(n_jobs), str(sampler), int(seed)
        self.n_startup_trials, self.direction = int(n_startup_trials), direction
        self.params = OmegaConf.to_container(params, resolve=False) if OmegaConf.is_config(params) else dict(params or {})

    def setup(self, *, hydra_context: Any, task_function: Any, config: Any) -> None:
        from hydra.core.plugins import Plugins

        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=task_function
        )

    def _compose(self, overrides: list[str]) -> Any:
        return self.hydra_context.config_loader.load_sweep_config(self.config, overrides)

    def _validate(self, search: Any, space: Any, arguments: list[str], source: str) -> None:
        from omegaconf import OmegaConf

        from pipeline.schema import validate_project
        from pipeline.sweep import point_project

        def check(cfg: Any) -> None:
            model = cfg.hydra.runtime.choices.get("model") or "model"
            plain = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
            validate_project(point_project(plain, model), lambda key: f"{source} ({key})")

        search.validate_space(space, arguments, self._compose, check, source)

    def sweep(self, arguments: list[str]) -> Any:
        from omegaconf import OmegaConf

        from pipeline import optuna_search as search
        from pipeline.errors import ConfigError
        from pipeline.sweep import objective_of

        source = "hparams_search (hydra.sweeper.params)"
        choices = self.config.hydra.runtime.choices
        if choices.get("hparams_search"):
            source = f"conf/hparams_search/{choices.get('hparams_search')}.yaml"
        try:  # a bad search space is one line, before any trial runs
            space = search.parse_space(self.params, source)
            self._validate(search, space, arguments, source)
            _, direction = objective_of(self.config)
        except ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
        direction = str(self.direction or direction)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")

        def launch(batch: list[list[str]], start: int) -> list[Any]:
            return list(self.launcher.launch(batch, initial_job_idx=start))

        def job_dir_of(ret: Any) -> Path:
            return Path(str(ret.hydra_cfg.hydra.runtime.output_dir))

        return search.run_search(space, arguments, launch, job_dir_of, sweep_dir, self.n_trials, self.n_jobs,
                                 direction, self.sampler, self.seed, self.n_startup_trials)
