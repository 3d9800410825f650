DROP TABLE forward_applied;
