"""The bonus job: loyalty coupons from sliding-window spend (DESIGN.md §3 "Bonus")."""
