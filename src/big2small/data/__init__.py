"""One LightningDataModule per data set."""
