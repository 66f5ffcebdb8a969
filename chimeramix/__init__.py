"""ChimeraMix: learned compositional data augmentation for few labelled images per class.

    from chimeramix import GeneratorConfig, ClassifierConfig, make_config, fit_generator, fit_classifier
"""

__version__ = "0.1.0"

_API = {
    "fit_generator": "chimeramix.train.generator",
    "load_generator": "chimeramix.train.generator",
    "fit_classifier": "chimeramix.train.classifier",
    "run_experiment": "chimeramix.experiment",
    "export_dataset": "chimeramix.export",
    "regenerate_file": "chimeramix.export",
    "load_classifier": "chimeramix.predict",
    "predict_images": "chimeramix.predict",
    "curate_dataset": "chimeramix.curate",
    "compare_image_sets": "chimeramix.fid",
    "frechet_distance": "chimeramix.fid",
    "frechet_distance_of_features": "chimeramix.fid",
    "feature_statistics": "chimeramix.fid",
    "GeneratorConfig": "chimeramix.config",
    "ClassifierConfig": "chimeramix.config",
    "make_config": "chimeramix.config",
    "open_source": "chimeramix.data",
    "make_split": "chimeramix.data",
    "ChimeraMixError": "chimeramix.errors",
}


def __getattr__(name):
    # Lazy, so `chimeramix --version` and `import chimeramix` stay quick; torch loads on first real use.
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'chimeramix' has no attribute {name!r}")


__all__ = ["__version__", *_API]
